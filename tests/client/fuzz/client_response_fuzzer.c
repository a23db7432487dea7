/*
 * client_response — what libalmanac parses from outside: the server's Environment JSON and the
 * cache file. The first byte picks the parser; the rest is the input. Every accessor is then
 * run over a parsed snapshot, so the merged view and the conversions see hostile data too.
 */
#include "internal.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int visit(const alm_config_entry *e, void *payload)
{
    const alm_config *cfg = payload;
    int64_t i;
    double d;
    int b;
    const char *s;
    alm_config_get_int64(&i, cfg, e->key);
    alm_config_get_double(&d, cfg, e->key);
    alm_config_get_bool(&b, cfg, e->key);
    if (alm_config_source_of(&s, cfg, e->key) != 0 || strcmp(s, e->source) != 0 ||
        !alm_config_has(cfg, e->key))
        __builtin_trap(); /* the merged view disagrees with itself */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    alm_config *cfg = NULL;
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        const alm__cache_key key = {"orders", "prod", NULL};
        alm__cache_parse(&cfg, text, len, "fuzz", &key);
    } else {
        alm_config_parse(&cfg, text, len);
    }
    if (cfg != NULL) {
        alm_config_foreach(cfg, visit, cfg);
        for (size_t i = 0; i < alm_config_source_count(cfg); i++)
            (void)alm_config_source_name(cfg, i);
        (void)alm_config_version(cfg);
        (void)alm_config_profiles(cfg);
        alm_config_free(cfg);
    }
    return 0;
}
