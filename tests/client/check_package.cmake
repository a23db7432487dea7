# Installs the almanac_client component into a scratch prefix, then builds examples/boot.c
# against it with find_package(almanac) and with pkg-config, and runs both binaries.
#   cmake -DBUILD_DIR=… -DSOURCE_DIR=… -DWORK_DIR=… -DPKG_CONFIG=… -DCC=… -DLIBDIR=lib
#         [-DEXTRA_FLAGS=-fsanitize=…] -P check_package.cmake
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
    endif()
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --component almanac_client)
foreach(f include/almanac.h ${LIBDIR}/libalmanac.a ${LIBDIR}/libalmanac.so.0
          ${LIBDIR}/pkgconfig/almanac.pc ${LIBDIR}/cmake/almanac/almanacConfig.cmake bin/almanac)
    if(NOT EXISTS ${prefix}/${f})
        message(FATAL_ERROR "not installed: ${f}")
    endif()
endforeach()

# find_package, the way examples/CMakeLists.txt documents it.
separate_arguments(extra UNIX_COMMAND "${EXTRA_FLAGS}")
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples -B ${WORK_DIR}/cmake-build
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${CC} "-DCMAKE_C_FLAGS=${EXTRA_FLAGS}"
    "-DCMAKE_EXE_LINKER_FLAGS=${EXTRA_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake-build)

# The shared target alone on a machine without the dependencies' development files: pkg-config
# is made to find none of them, and the configuration must still give almanac::almanac.
file(WRITE ${WORK_DIR}/shared-only/CMakeLists.txt
    "cmake_minimum_required(VERSION 3.16)\nproject(shared_only C)\n"
    "find_package(almanac REQUIRED)\nadd_executable(boot ${SOURCE_DIR}/examples/boot.c)\n"
    "target_link_libraries(boot PRIVATE almanac::almanac)\n")
set(ENV{PKG_CONFIG_LIBDIR} ${WORK_DIR}/no-pc-files)
set(ENV{PKG_CONFIG_PATH} "")
run(${CMAKE_COMMAND} -S ${WORK_DIR}/shared-only -B ${WORK_DIR}/shared-only/build
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${CC} "-DCMAKE_C_FLAGS=${EXTRA_FLAGS}"
    "-DCMAKE_EXE_LINKER_FLAGS=${EXTRA_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/shared-only/build)
unset(ENV{PKG_CONFIG_LIBDIR})

# pkg-config, shared and static.
set(ENV{PKG_CONFIG_PATH} ${prefix}/${LIBDIR}/pkgconfig)
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs almanac OUTPUT_VARIABLE flags
    RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config does not know almanac")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${CC} ${extra} ${SOURCE_DIR}/examples/boot.c ${flags} -o ${WORK_DIR}/boot-pc)
# The static library with its dependencies linked as shared libraries (a fully static link
# needs static builds of libcurl's own dependencies, which distributions rarely ship).
execute_process(COMMAND ${PKG_CONFIG} --cflags almanac OUTPUT_VARIABLE cflags
    OUTPUT_STRIP_TRAILING_WHITESPACE)
execute_process(COMMAND ${PKG_CONFIG} --print-requires-private almanac OUTPUT_VARIABLE reqs
    OUTPUT_STRIP_TRAILING_WHITESPACE)
string(REPLACE "\n" ";" reqs "${reqs}")
execute_process(COMMAND ${PKG_CONFIG} --libs ${reqs} OUTPUT_VARIABLE deplibs
    OUTPUT_STRIP_TRAILING_WHITESPACE)
separate_arguments(cflags UNIX_COMMAND "${cflags}")
separate_arguments(deplibs UNIX_COMMAND "${deplibs}")
run(${CC} ${extra} ${SOURCE_DIR}/examples/boot.c ${cflags} ${prefix}/${LIBDIR}/libalmanac.a
    ${deplibs} -lpthread -lm -o ${WORK_DIR}/boot-static)

# Each binary runs (usage error, exit 2) against the installed library, not the build tree's.
set(ENV{LD_LIBRARY_PATH} ${prefix}/${LIBDIR})
foreach(bin ${WORK_DIR}/cmake-build/boot ${WORK_DIR}/cmake-build/boot-static
            ${WORK_DIR}/shared-only/build/boot
            ${WORK_DIR}/boot-pc ${WORK_DIR}/boot-static)
    execute_process(COMMAND ${bin} RESULT_VARIABLE rc ERROR_VARIABLE err)
    if(NOT rc EQUAL 2 OR NOT err MATCHES "usage: boot")
        message(FATAL_ERROR "${bin} did not run: ${rc} ${err}")
    endif()
endforeach()
execute_process(COMMAND ${prefix}/bin/almanac --version RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "^almanac ")
    message(FATAL_ERROR "installed almanac does not run: ${rc} ${out}")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
message(STATUS "installed package works with find_package and pkg-config")
