// json_text (the library page's JSON writer) must answer exactly the text
// nlohmann::json would, for every string, including invalid UTF-8.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "json_text.hpp"

namespace jt = vessel::server::json_text;

namespace {

std::string viaNlohmann(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string viaWriter(const std::string& s) {
  std::string out;
  jt::appendString(out, s);
  return out;
}

}  // namespace

TEST(JsonText, StringsMatchNlohmann) {
  const std::string cases[] = {
      "",
      "plain ascii",
      "quote \" backslash \\ slash /",
      std::string("nul \0 byte", 10),
      "\b\f\n\r\t\x01\x1f\x7f",
      "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x8E\xB5",  // é € 🎵
      "bad \xFF byte",
      "truncated \xE2\x82",
      "overlong \xC0\xAF and \xE0\x80\xAF",
      "surrogate \xED\xA0\x80",
      "past max \xF4\x90\x80\x80",
      "lone continuation \x80\x80",
  };
  for (const auto& s : cases) EXPECT_EQ(viaWriter(s), viaNlohmann(s)) << s;
}

TEST(JsonText, RandomBytesMatchNlohmannAndParse) {
  std::mt19937 rng(42);
  for (int n = 0; n < 5000; ++n) {
    std::string s(rng() % 24, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 256);
    const std::string text = viaWriter(s);
    EXPECT_EQ(text, viaNlohmann(s));
    EXPECT_TRUE(nlohmann::json::accept(text)) << text;
  }
}

TEST(JsonText, NumbersRoundTrip) {
  for (double v : {0.0, 1.0, 0.5, 12.345, 1e-7, 7200.136, 123456789.125, -3.0}) {
    std::string out;
    jt::appendNumber(out, v);
    EXPECT_EQ(nlohmann::json::parse(out).get<double>(), v) << out;
  }
  std::string out;
  jt::appendNumber(out, std::nan(""));
  jt::appendNumber(out, std::numeric_limits<double>::infinity());
  EXPECT_EQ(out, "nullnull");
  out.clear();
  jt::appendInteger(out, -9223372036854775807LL);
  EXPECT_EQ(out, "-9223372036854775807");
}
