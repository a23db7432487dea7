/*
 * propfile_fuzzer — arbitrary bytes through propfile_parse under small limits, and every parsed
 * document through the renderers (flatrender_yaml/json/properties/env) and placeholder
 * resolution, since a .properties file is exactly what reaches them from a hostile repository.
 * Checks what must hold for any input: a failed parse leaves an empty list, values are strings,
 * and a rendered document is NUL-terminated at its stated length.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flatrender.h"
#include "placeholder.h"
#include "propfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_buf(const flatrender_buf *b)
{
    if (b->data == NULL || b->data[b->len] != '\0')
        abort();
}

static void render_all(json_t *props)
{
    char msg[256];
    flatrender_buf b = {NULL, 0};
    if (flatrender_yaml(&b, props, msg, sizeof(msg)) == 0)
        check_buf(&b);
    free(b.data);
    b.data = NULL;
    if (flatrender_json(&b, props, msg, sizeof(msg)) == 0)
        check_buf(&b);
    free(b.data);
    b.data = NULL;
    if (flatrender_properties(&b, props, msg, sizeof(msg)) == 0)
        check_buf(&b);
    free(b.data);
    b.data = NULL;
    if (flatrender_env(&b, props, msg, sizeof(msg)) == 0)
        check_buf(&b);
    free(b.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    limits.max_bytes = 1 << 16;
    limits.max_entries = 2000;
    limits.max_documents = 50;
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    if (propfile_parse(&list, (const char *)data, size, &limits, &err) != 0) {
        if (list.count != 0 || list.docs != NULL || err.message[0] == '\0')
            abort();
        return 0;
    }
    for (size_t i = 0; i < list.count; i++) {
        const char *key;
        json_t *value;
        json_object_foreach(list.docs[i].props, key, value)
        {
            if (!json_is_string(value) || json_object_get(list.docs[i].origins, key) == NULL)
                abort();
        }
        render_all(list.docs[i].props);
        if (placeholder_resolve_map(list.docs[i].props) != 0)
            abort();
        render_all(list.docs[i].props);
        size_t out_len = 0;
        char *text =
            placeholder_resolve_text((const char *)data, size, list.docs[i].props, &out_len);
        if (text == NULL || text[out_len] != '\0')
            abort();
        free(text);
    }
    confdoc_list_dispose(&list);
    return 0;
}
