/*
 * render_dir — the output directory of `almanac render`, kept the way the kubelet keeps a
 * ConfigMap volume: version folders `DIR/..YYYY_MM_DD_HH_MM_SS.XXXXXX`, the `DIR/..data` link
 * naming the one in use (swapped with one rename), stable names in DIR (links through ..data,
 * or real files with --layout files), and `DIR/..status`. It knows nothing of servers,
 * watches or commands: render.c decides what goes in and when.
 */
#ifndef ALMANAC_CLI_RENDER_DIR_H
#define ALMANAC_CLI_RENDER_DIR_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#define RDIR_DATA_LINK "..data"
#define RDIR_STATUS "..status"
#define RDIR_PATH_MAX 4096
#define RDIR_NAME_MAX 256

typedef enum rdir_layout {
    RDIR_LAYOUT_SYMLINKS, /* DIR/NAME -> ..data/NAME, as a ConfigMap volume */
    RDIR_LAYOUT_FILES     /* DIR/NAME a real file, each replaced with one rename */
} rdir_layout;

/* One file of a version: its name in DIR and its bytes. */
typedef struct rdir_item {
    char name[RDIR_NAME_MAX];
    const char *data;
    size_t len;
} rdir_item;

/*
 * Refuses (message on stderr, -1) a stable name taken by something almanac did not write:
 * anything but a link or the file ..data holds under that name (the files layout). Creates DIR
 * if missing.
 */
int rdir_check_names(const char *dir, const rdir_item *items, size_t count);

/*
 * Writes a new version folder, complete and synced but not yet in use, with files of `mode`;
 * its full path goes to folder (RDIR_PATH_MAX). -1 with a message on failure (nothing left).
 */
int rdir_stage(char *folder, const char *dir, const rdir_item *items, size_t count, mode_t mode);

/* The name of the folder ..data names now ("" when none); folder_name has RDIR_NAME_MAX. */
void rdir_current(char *folder_name, const char *dir);

/*
 * Makes the folder `folder_name` (inside dir) the one in use: ..data swapped with one rename,
 * then the stable names (links made once, or with RDIR_LAYOUT_FILES each file hard-linked and
 * renamed over its name). -1 with a message on failure.
 */
int rdir_publish(const char *dir, const char *folder_name, const rdir_item *items, size_t count,
                 rdir_layout layout);

/* Removes a version folder and its files. */
void rdir_remove_folder(const char *folder);

/* Removes every version folder of dir but keep (a name; NULL or "" keeps none). */
void rdir_remove_old(const char *dir, const char *keep);

/* Writes status as DIR/..status (mode 0644), atomically. -1 with a message on failure. */
int rdir_write_status(const char *dir, const json_t *status);

#endif
