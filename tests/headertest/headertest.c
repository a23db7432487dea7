/*
 * Compiles almanac.h alone, first thing, under several C standards (the build sets -std): the
 * header must bring everything it needs and nothing the caller would have to define. main()
 * also checks that the macros and the library agree, and that ALM_CLIENT_OPTIONS_INIT works.
 */
#include "almanac.h"
#include "almanac.h" /* twice: the include guard works */

#include <stdio.h>
#include <string.h>

int main(void)
{
    alm_client_options opts = ALM_CLIENT_OPTIONS_INIT;
    alm_client *client = NULL;
    int major = 0;
    if (opts.version != ALM_CLIENT_OPTIONS_VERSION || opts.server != NULL)
        return 1;
    if (strcmp(alm_version(&major, NULL, NULL), ALM_VERSION) != 0 || major != ALM_VERSION_MAJOR)
        return 1;
    if (ALM_VERSION_NUM !=
        ((ALM_VERSION_MAJOR << 16) | (ALM_VERSION_MINOR << 8) | ALM_VERSION_PATCH))
        return 1;
    if (alm_client_new(&client, &opts) != ALM_EINVALID || client != NULL)
        return 1;
    puts(alm_error_last()->message);
    return 0;
}
