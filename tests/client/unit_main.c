/*
 * The libalmanac unit tests that need no server: the Environment parser and merged view, the
 * typed conversions, errors, the cache file, and the client's failure paths (a closed port,
 * the cache standing in for it). One executable, one cmocka group per file.
 */
#include "client_tests.h"

int main(void)
{
    int failed = 0;
    failed += client_config_tests();
    failed += client_cache_tests();
    failed += client_client_tests();
    failed += client_structured_tests();
    return failed == 0 ? 0 : 1;
}
