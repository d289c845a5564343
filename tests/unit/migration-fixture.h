/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The fixture the migration unit tests share: a source tree with a data
 * file, an empty file, a subdirectory, a hard link, a symlink and a FIFO,
 * an empty target beside it, and an Mfs over the source; helpers to start
 * a migration, wait for a state and compare trees.
 */
#ifndef MIGRATION_FIXTURE_H
#define MIGRATION_FIXTURE_H

#include "mfs-int.h"
#include "migration.h"

#define CHUNK 4096

extern char *top, *src, *dst;
extern Mfs *fs;
extern MfsCred cred;

void write_file(const char *dir, const char *name, size_t size, unsigned seed);
/* Check fixtures: a fresh tree and Mfs for each test. */
void setup(void);
void teardown(void);
/* Start migrating to dst with @extra's options (CHUNK-sized chunks by default). */
void start(const MfsMigOptions *extra);
void wait_for(MfsMigState want);
/* Names, types, modes, contents, link counts, link targets. */
void assert_trees_equal(const char *a, const char *b);
bool journal_says_switched(const char *dir);
bool exists(const char *dir, const char *name);
/* dst/@name (im)mutable: every write to it then fails (EPERM); false where it cannot be. */
bool set_target_immutable(const char *name, bool on);

#endif
