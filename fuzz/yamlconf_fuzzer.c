/*
 * yamlconf_fuzzer — feeds arbitrary bytes to the YAML configuration parser under the default
 * limits. It must never crash, leak or hang; on success every flattened value must be a scalar
 * with an origin, and on failure the output must be empty and the message set.
 */
#include <stdint.h>
#include <stdlib.h>

#include "yamlconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    confdoc_list list = {NULL, 0};
    confdoc_error err;

    if (yamlconf_parse(&list, (const char *)data, size, &limits, &err) != 0) {
        if (list.count != 0 || list.docs != NULL || err.message[0] == '\0')
            abort();
        return 0;
    }
    for (size_t i = 0; i < list.count; i++) {
        const char *key;
        json_t *value;
        json_object_foreach(list.docs[i].props, key, value)
        {
            if (json_is_object(value) || json_is_array(value) || json_is_null(value) ||
                json_object_get(list.docs[i].origins, key) == NULL)
                abort();
        }
    }
    confdoc_list_dispose(&list);
    return 0;
}
