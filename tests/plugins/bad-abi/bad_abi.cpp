// A plugin built to be refused: -DBAD_ABI exports ABI version 999, -DBAD_KIND an
// unknown kind. create() aborts, proving the host never calls it.
#include <boost/dll/alias.hpp>
#include <cstdlib>

#include "vessel/plugin.hpp"

namespace {

const std::vector<vessel::ConfigField>* fields() noexcept {
  static const std::vector<vessel::ConfigField> kNone;
  return &kNone;
}
void* create(const vessel::Config&, std::string&) noexcept { std::abort(); }
void destroy(void*) noexcept { std::abort(); }

const vessel::PluginDescriptor* entry() noexcept {
  static const vessel::PluginDescriptor d{
#ifdef BAD_ABI
      999,
      vessel::PluginKind::kStorage,
#else
      vessel::kPluginAbiVersion,
      static_cast<vessel::PluginKind>(77),
#endif
      "broken",
      "0.0.1",
      "a plugin the host must refuse",
      fields,
      create,
      destroy};
  return &d;
}

}  // namespace

BOOST_DLL_ALIAS(entry, vessel_plugin_v1)
