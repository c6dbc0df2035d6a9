// Sign in and create-account forms. Validation messages and the server's
// refusals are shown under the field they are about (aria-invalid +
// aria-describedby), everything else under the form; the session itself is the
// HttpOnly cookie the server sets.
import { api } from './api.js';
import { $ } from './util.js';

function capitalize(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

function setFieldError(input, message) {
  const out = document.getElementById(`${input.id}-error`);
  if (out) out.textContent = message ?? '';
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

function clearErrors(form) {
  for (const input of form.querySelectorAll('input')) setFieldError(input, null);
  const formError = form.querySelector('.form-error');
  if (formError) formError.textContent = '';
}

// Client-side checks that need no server: empty fields and malformed emails.
function localErrors(form) {
  const errors = [];
  for (const input of form.querySelectorAll('input')) {
    if (input.validity.valueMissing) {
      errors.push([input, input.type === 'email' ? 'Enter your email address.' : 'Enter a password.']);
    } else if (input.validity.typeMismatch) {
      errors.push([input, 'Enter an email address like name@example.com.']);
    }
  }
  return errors;
}

function showServerError(form, err) {
  const field = err.field && form.querySelector(`input[name="${err.field}"]`);
  if (field) {
    const message = err.code === 'email_taken'
      ? 'An account with this email already exists. Sign in instead?'
      : capitalize(err.message);
    setFieldError(field, message.endsWith('.') || message.endsWith('?') ? message : `${message}.`);
    field.focus();
    return;
  }
  if (err.code === 'invalid_credentials') {
    const password = form.querySelector('input[name="password"]');
    setFieldError(password, 'Wrong email or password.');
    password.select();
    password.focus();
    return;
  }
  const formError = form.querySelector('.form-error');
  formError.textContent = err.status === 404
    ? 'This server does not use passwords (single sign-on): open Vessel through your sign-in portal.'
    : err.message;
}

/**
 * Wires both forms. onSignedIn(user) runs after a successful sign-in (or
 * account creation, which signs in right away).
 */
export function setupAuth(onSignedIn) {
  const tabs = [$('#tab-signin'), $('#tab-register')];
  const forms = { 'tab-signin': $('#signin-form'), 'tab-register': $('#register-form') };

  function select(tab, focus = false) {
    for (const t of tabs) {
      const selected = t === tab;
      t.setAttribute('aria-selected', String(selected));
      t.tabIndex = selected ? 0 : -1;
      forms[t.id].hidden = !selected;
    }
    if (focus) tab.focus();
    const first = forms[tab.id].querySelector('input');
    if (!focus) first?.focus();
  }

  for (const tab of tabs) {
    tab.addEventListener('click', () => select(tab));
    tab.addEventListener('keydown', (e) => {
      if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight' && e.key !== 'Home' && e.key !== 'End') return;
      e.preventDefault();
      const i = tabs.indexOf(tab);
      const next = e.key === 'Home' ? 0 : e.key === 'End' ? tabs.length - 1
        : (i + (e.key === 'ArrowRight' ? 1 : -1) + tabs.length) % tabs.length;
      select(tabs[next], true);
    });
  }
  for (const link of document.querySelectorAll('[data-switch-tab]')) {
    link.addEventListener('click', (e) => {
      e.preventDefault();
      select($(`#${link.dataset.switchTab}`));
    });
  }

  async function submit(form, action) {
    clearErrors(form);
    const errors = localErrors(form);
    if (errors.length) {
      for (const [input, message] of errors) setFieldError(input, message);
      errors[0][0].focus();
      return;
    }
    const email = form.elements.email.value.trim();
    const password = form.elements.password.value;
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const user = await action(email, password);
      form.reset();
      onSignedIn(user);
    } catch (err) {
      showServerError(form, err);
    } finally {
      button.disabled = false;
      form.removeAttribute('aria-busy');
    }
  }

  forms['tab-signin'].addEventListener('submit', (e) => {
    e.preventDefault();
    submit(e.currentTarget, async (email, password) => (await api.login(email, password)).user);
  });
  forms['tab-register'].addEventListener('submit', (e) => {
    e.preventDefault();
    submit(e.currentTarget, async (email, password) => {
      await api.register(email, password);
      return (await api.login(email, password)).user;
    });
  });
  for (const form of Object.values(forms)) {
    form.addEventListener('input', (e) => {
      if (e.target.matches('input')) setFieldError(e.target, null);
    });
  }

  return {
    show(message = '') {
      const active = tabs.find((t) => t.getAttribute('aria-selected') === 'true') ?? tabs[0];
      select(message ? tabs[0] : active); // a message (session ended) is about signing in
      $('#signin-error').textContent = message;
    },
  };
}
