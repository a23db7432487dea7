/*
 * replay_main — runs every file of a corpus directory through a fuzz target's
 * LLVMFuzzerTestOneInput, so ctest exercises the corpora with any compiler (and, in the
 * sanitizer build, under ASan+UBSan). Not linked into libFuzzer builds, which bring their own
 * main.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The tests' own whole-file reader: corpus files are test data like theirs. */
#include "../tests/unit/test_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    size_t len = 0;
    char *buf = test_read_file(path, &len);
    if (buf == NULL) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    DIR *dir = opendir(argv[1]);
    if (dir == NULL) {
        fprintf(stderr, "replay: cannot open corpus %s\n", argv[1]);
        return 2;
    }
    int count = 0, failures = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[1], entry->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (replay_file(path) != 0)
            failures++;
        count++;
    }
    closedir(dir);
    printf("replayed %d corpus files from %s\n", count, argv[1]);
    if (count == 0) {
        fprintf(stderr, "replay: corpus %s is empty\n", argv[1]);
        return 1;
    }
    return failures ? 1 : 0;
}
