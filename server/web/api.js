// The Vessel HTTP API as the web app uses it. Authentication is the HttpOnly
// session cookie the server sets at login: the token is never read or stored
// here. Every failure is an ApiError carrying the server's {code, message, field}.
import { Emitter } from './util.js';

export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** Fires 'unauthenticated' when any call gets a 401 (the session ended). */
export const session = new Emitter();

async function call(method, path, { body, signal, quiet401 = false } = {}) {
  const init = {
    method,
    signal,
    credentials: 'same-origin',
    headers: { Accept: 'application/json' },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
  if (response.status === 204) return null;
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const e = data?.error ?? {};
    if (response.status === 401 && !quiet401) session.emit('unauthenticated');
    throw new ApiError(
      response.status,
      e.code ?? `http_${response.status}`,
      e.message ?? `The server answered ${response.status} ${response.statusText}`.trim(),
      e.field ?? null,
    );
  }
  return data;
}

export const api = {
  me: () => call('GET', '/api/v1/me', { quiet401: true }),
  register: (email, password) =>
    call('POST', '/api/v1/auth/register', { body: { email, password }, quiet401: true }),
  login: (email, password) =>
    call('POST', '/api/v1/auth/login', { body: { email, password }, quiet401: true }),
  logout: () => call('POST', '/api/v1/auth/logout', { quiet401: true }),

  createUpload: (file, contentType) =>
    call('POST', '/api/v1/uploads', {
      body: { filename: file.name, content_type: contentType, size: file.size },
    }),
  completeUpload: (id) => call('POST', `/api/v1/uploads/${encodeURIComponent(id)}/complete`),
  getUpload: (id, signal) => call('GET', `/api/v1/uploads/${encodeURIComponent(id)}`, { signal }),
  retryUpload: (id) => call('POST', `/api/v1/uploads/${encodeURIComponent(id)}/retry`),
  deleteUpload: (id) => call('DELETE', `/api/v1/uploads/${encodeURIComponent(id)}`),

  /** One page of the library, newest first: {items, next_cursor}. */
  listUploads: ({ q = '', status = '', limit = 30, cursor = '' } = {}, signal, { quiet401 = false } = {}) => {
    const params = new URLSearchParams();
    if (q) params.set('q', q);
    if (status) params.set('status', status);
    params.set('limit', String(limit));
    if (cursor) params.set('cursor', cursor);
    return call('GET', `/api/v1/uploads?${params}`, { signal, quiet401 });
  },
};

/**
 * PUTs a file to a signed upload URL with XMLHttpRequest (fetch has no upload
 * progress). onProgress(sentBytes, totalBytes). Resolves with the JSON answer;
 * rejects with an ApiError (code 'aborted' when abort() was called).
 */
export function putFile(upload, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open(upload.method || 'PUT', upload.url);
    for (const [name, value] of Object.entries(upload.headers ?? {})) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener('progress', (e) => {
      onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    });
    xhr.addEventListener('load', () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(file.size, file.size);
        resolve(data);
      } else {
        const e = data?.error ?? {};
        reject(new ApiError(xhr.status, e.code ?? `http_${xhr.status}`,
          e.message ?? `The upload failed (${xhr.status})`));
      }
    });
    xhr.addEventListener('error', () =>
      reject(new ApiError(0, 'network', 'The connection broke during the upload.')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'aborted', 'Upload cancelled.')));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}
