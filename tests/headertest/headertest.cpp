// Compiles almanac.h alone as C++: extern "C" linkage, no C-only constructs in the header.
#include "almanac.h"

#include <cstring>
#include <memory>

namespace {
struct config_deleter {
    void operator()(alm_config *cfg) const { alm_config_free(cfg); }
};
} // namespace

int main()
{
    alm_client_options opts = ALM_CLIENT_OPTIONS_INIT;
    if (opts.version != ALM_CLIENT_OPTIONS_VERSION)
        return 1;
    const char json[] = "{\"propertySources\":[{\"name\":\"s\",\"source\":{\"k\":\"v\"}}]}";
    alm_config *raw = nullptr;
    if (alm_config_parse(&raw, json, sizeof(json) - 1) != 0)
        return 1;
    std::unique_ptr<alm_config, config_deleter> cfg(raw);
    const char *v = nullptr;
    if (alm_config_get_string(&v, cfg.get(), "k") != 0 || std::strcmp(v, "v") != 0)
        return 1;
    return std::strcmp(alm_version(nullptr, nullptr, nullptr), ALM_VERSION) == 0 ? 0 : 1;
}
