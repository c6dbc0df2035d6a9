// A bounded scanner for S3's flat XML documents; see s3_xml.hpp.
#include "s3_xml.hpp"

#include <charconv>
#include <cstdint>

namespace vessel::plugins::s3 {

namespace {

void appendUtf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

/// Decodes one reference body ("amp", "#65", "#x41"); false if malformed.
bool decodeReference(std::string_view name, std::string& out) {
  if (name == "lt") return out.push_back('<'), true;
  if (name == "gt") return out.push_back('>'), true;
  if (name == "amp") return out.push_back('&'), true;
  if (name == "quot") return out.push_back('"'), true;
  if (name == "apos") return out.push_back('\''), true;
  if (name.size() < 2 || name[0] != '#') return false;
  int base = 10;
  std::string_view digits = name.substr(1);
  if (digits[0] == 'x' || digits[0] == 'X') {
    base = 16;
    digits.remove_prefix(1);
  }
  std::uint32_t cp = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), cp, base);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty()) return false;
  if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  appendUtf8(out, cp);
  return true;
}

}  // namespace

std::vector<std::string_view> xmlElements(std::string_view doc, std::string_view tag) {
  std::vector<std::string_view> out;
  const std::string open = "<" + std::string(tag);
  const std::string close = "</" + std::string(tag) + ">";
  std::size_t pos = 0;
  while (pos < doc.size()) {
    const std::size_t start = doc.find(open, pos);
    if (start == std::string_view::npos) break;
    const std::size_t after_name = start + open.size();
    if (after_name >= doc.size()) break;
    const char next = doc[after_name];
    if (next != '>' && next != ' ' && next != '/' && next != '\t' && next != '\r' && next != '\n') {
      pos = after_name;  // a longer tag name that merely starts with `tag`
      continue;
    }
    const std::size_t open_end = doc.find('>', after_name);
    if (open_end == std::string_view::npos) break;
    if (doc[open_end - 1] == '/') {  // <tag/>
      out.emplace_back();
      pos = open_end + 1;
      continue;
    }
    const std::size_t close_pos = doc.find(close, open_end + 1);
    if (close_pos == std::string_view::npos) break;
    out.push_back(doc.substr(open_end + 1, close_pos - open_end - 1));
    pos = close_pos + close.size();
  }
  return out;
}

std::optional<std::string> xmlText(std::string_view doc, std::string_view tag) {
  auto elements = xmlElements(doc, tag);
  if (elements.empty()) return std::nullopt;
  return xmlDecode(elements.front());
}

std::string xmlDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t amp = text.find('&', pos);
    if (amp == std::string_view::npos) {
      out.append(text.substr(pos));
      break;
    }
    out.append(text.substr(pos, amp - pos));
    const std::size_t semi = text.find(';', amp + 1);
    // References are short; a far-away ';' means this '&' was not one.
    if (semi == std::string_view::npos || semi - amp > 12 ||
        !decodeReference(text.substr(amp + 1, semi - amp - 1), out)) {
      out.push_back('&');
      pos = amp + 1;
      continue;
    }
    pos = semi + 1;
  }
  return out;
}

std::string xmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

}  // namespace vessel::plugins::s3
