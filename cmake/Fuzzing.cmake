# Each parser that takes outside input has a libFuzzer target (-DALMANAC_FUZZ=ON, clang only).
# Without it the same entry points are linked into a replay driver that ctest runs over the
# committed corpora, so every corpus file is exercised with any compiler.
function(almanac_fuzz_target name source)
    set(libs ${ARGN})
    if(ALMANAC_FUZZ)
        add_executable(${name}_fuzzer ${source})
        target_compile_options(${name}_fuzzer PRIVATE -fsanitize=fuzzer,address,undefined)
        target_link_options(${name}_fuzzer PRIVATE -fsanitize=fuzzer,address,undefined)
        target_link_libraries(${name}_fuzzer PRIVATE ${libs})
    endif()
    add_executable(${name}_replay ${source} ${CMAKE_SOURCE_DIR}/fuzz/replay_main.c)
    target_link_libraries(${name}_replay PRIVATE ${libs})
    if(ALMANAC_TESTS)
        add_test(NAME fuzz_replay_${name}
                 COMMAND ${name}_replay ${CMAKE_SOURCE_DIR}/fuzz/corpora/${name})
        set_tests_properties(fuzz_replay_${name} PROPERTIES LABELS fuzz-replay)
    endif()
endfunction()
