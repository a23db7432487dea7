# The strict warning set every target is compiled with (STYLE.md, "Build and checks").
set(ALMANAC_WARNINGS
    -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
    -Wstrict-prototypes -Wmissing-prototypes -Wold-style-definition
    -Wformat=2 -Wvla -Wpointer-arith -Wcast-qual -Wundef -Wwrite-strings
    -Wnull-dereference -Wdouble-promotion -Wimplicit-fallthrough)
if(ALMANAC_WERROR)
    list(APPEND ALMANAC_WARNINGS -Werror)
endif()

function(almanac_warnings target)
    target_compile_options(${target} PRIVATE ${ALMANAC_WARNINGS})
endfunction()
