// Just enough XML for S3's responses (ListObjectsV2, errors, multipart, DeleteObjects
// results) and requests (CompleteMultipartUpload, Delete). S3's documents are flat
// and never nest an element inside one of the same name, so a scanner that finds
// <Name>...</Name> pairs is enough; text is entity-decoded. Nothing here trusts a
// length or offset from the document: every search is bounded by the input.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vessel::plugins::s3 {

/// The raw (undecoded) contents of every <tag>...</tag> (or <tag attr=...>) in
/// `doc`, in order; <tag/> yields an empty string.
std::vector<std::string_view> xmlElements(std::string_view doc, std::string_view tag);

/// The decoded text of the first <tag> in `doc`, if any.
std::optional<std::string> xmlText(std::string_view doc, std::string_view tag);

/// Decodes &lt; &gt; &amp; &quot; &apos; and numeric references (&#65; &#x41;);
/// malformed references are kept as they are.
std::string xmlDecode(std::string_view text);

/// Escapes & < > " ' for element text and attribute values.
std::string xmlEscape(std::string_view text);

}  // namespace vessel::plugins::s3
