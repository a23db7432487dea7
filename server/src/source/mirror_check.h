/*
 * mirror_check — is the Git mirror under the cache directory sound? Part of repo (the only
 * other file that includes <git2.h>); repo.c decides what to do about damage (re-clone).
 *
 * A damaged mirror (a truncated or flipped pack, a missing .idx, a garbage ref) used to be
 * opened as if nothing were wrong and then answer 500 for ever. The check looks for exactly
 * what an operator's disk, a crash or a careless hand leaves, at a cost bounded for big
 * mirrors:
 *   - every ref file parses and every ref names an object the mirror has;
 *   - every pack has its index and every index its pack; a pack starts with "PACK" and ends
 *     with the checksum its index records for it;
 *   - thorough only: the SHA-1 trailers of packs and indexes are recomputed over their content,
 *     up to MIRROR_CHECK_HASH_BUDGET bytes in all (beyond that a pack gets the cheap checks
 *     only, and damage inside it is found when a read trips over it), and every object of the
 *     served commits' trees is read (inflated and hash-checked by libgit2), up to
 *     MIRROR_CHECK_TREE_OBJECTS objects.
 */
#ifndef ALMANAC_MIRROR_CHECK_H
#define ALMANAC_MIRROR_CHECK_H

#include <git2.h>
#include <stdbool.h>
#include <stddef.h>

#define MIRROR_CHECK_HASH_BUDGET (512ull << 20) /* bytes of pack and index hashed per check */
#define MIRROR_CHECK_TREE_OBJECTS 200000u       /* objects of the served trees read per check */

/*
 * Checks the mirror g (a bare repository in git_dir). served: the commits being served (the
 * default label's, its pin), whose trees a thorough check reads whole. Returns 0 when nothing
 * is wrong, 1 when the mirror is damaged (why says what, naming the file or ref), <0 when the
 * check itself could not run (why says why; the mirror is not blamed).
 */
int mirror_check(git_repository *g, const char *git_dir, bool thorough, const git_oid *served,
                 size_t served_count, char *why, size_t why_size);

/* Whether the calling thread's last libgit2 error can only come from damaged storage (a zlib
 * stream that does not inflate, an object whose hash does not match, a corrupt file). */
bool mirror_error_means_damage(void);

#endif
