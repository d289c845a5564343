/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: control_handle_request(), everything the control
 * socket does with one request line, on a real Mfs.
 *
 * The first input byte picks the peer (root, or another user, who must be
 * refused); the rest is the line.  Every reply must be one JSON object
 * with "ok" (a boolean) and "version" 1, and when ok is false a non-empty
 * "error"; anything else aborts.  Sanitizers (ASan, UBSan, LeakSanitizer)
 * report the rest.
 *
 * Valid commands really run: a "start" starts a migration, with its
 * copier thread, and later requests meet it copying, mirrored, switched,
 * cancelled...  So that a fuzzed target path can only name the sandbox,
 * with FUZZ_SANDBOX=DIR (run-fuzz.sh sets it when run as root) the process
 * enters a mount namespace of its own and chroot()s into DIR, made afresh:
 *
 *     /src   the source: files, a directory, a symlink
 *     /dst, /dst2, /dst3  empty directories, targets to find
 *     /proc  bound from the host's (the engine opens /proc/self/fd paths;
 *            LeakSanitizer reads it)
 *
 * libFuzzer reads its corpus and dictionary and writes its artifacts after
 * this: their paths are then paths inside DIR.  Without FUZZ_SANDBOX the
 * tree is made under $TMPDIR and inputs that mention "start" are skipped.
 * See run-fuzz.sh.
 */
#define _GNU_SOURCE
#include "control.h"
#include "mfs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-glib/json-glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static Mfs *fs;
static int sandboxed;
/* FUZZ_SKIP_SURROGATES=1: leave out requests with \uD... escapes, to look
 * past a known finding (a reply that echoes a lone surrogate is not UTF-8). */
static int skip_surrogates;

static void put(const char *path, const char *text, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, text, len) != (ssize_t)len) {
		perror(path);
		abort();
	}
	close(fd);
}

static void quiet_log(const char *domain, GLogLevelFlags level, const char *msg, gpointer data)
{
	(void)domain, (void)level, (void)msg, (void)data;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *sandbox = getenv("FUZZ_SANDBOX"), *tmp = getenv("TMPDIR");
	static char big[256 * 1024];
	char dir[4096], path[4200];
	int ret;

	(void)argc, (void)argv;
	if (sandbox && *sandbox) {
		snprintf(dir, sizeof(dir), "%s", sandbox);
		for (const char *const *d =
		         (const char *const[]){"src", "dst", "dst2", "dst3", NULL};
		     *d; d++) {
			snprintf(path, sizeof(path), "%s/%s", dir, *d);
			nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
		}
	} else {
		snprintf(dir, sizeof(dir), "%s/mfs-fuzz-control.XXXXXX",
		         tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			abort();
		}
	}
	snprintf(path, sizeof(path), "%s/src", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/src/sub", dir);
	mkdir(path, 0755);
	for (const char *const *d = (const char *const[]){"dst", "dst2", "dst3", NULL}; *d; d++) {
		snprintf(path, sizeof(path), "%s/%s", dir, *d);
		mkdir(path, 0755);
	}
	memset(big, 'x', sizeof(big));
	snprintf(path, sizeof(path), "%s/src/disk.raw", dir);
	put(path, big, sizeof(big));
	snprintf(path, sizeof(path), "%s/src/sub/vm.conf", dir);
	put(path, "name=vm\n", 8);
	snprintf(path, sizeof(path), "%s/src/link", dir);
	if (symlink("disk.raw", path) < 0)
		perror("symlink");
	if (sandbox && *sandbox) {
		snprintf(path, sizeof(path), "%s/proc", dir);
		mkdir(path, 0555);
		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("/proc", path, NULL, MS_BIND | MS_REC, NULL) < 0 || chroot(dir) < 0 ||
		    chdir("/") < 0) {
			fprintf(stderr, "fuzz-control: cannot enter the sandbox %s: %s\n", dir,
			        strerror(errno));
			abort();
		}
		sandboxed = 1;
		ret = mfs_new("/src", &fs);
	} else {
		fprintf(stderr, "fuzz-control: no sandbox: requests with \"start\" are skipped\n");
		snprintf(path, sizeof(path), "%s/src", dir);
		ret = mfs_new(path, &fs);
	}
	if (ret < 0) {
		fprintf(stderr, "mfs_new: %s\n", strerror(-ret));
		abort();
	}
	g_log_set_default_handler(quiet_log, NULL);
	skip_surrogates = getenv("FUZZ_SKIP_SURROGATES") != NULL;
	return 0;
}

static void check_reply(const char *line, const char *reply)
{
	g_autoptr(JsonParser) parser = json_parser_new();
	JsonNode *root, *ok, *version, *error;
	JsonObject *obj;
	const char *why = NULL;

	if (!reply) {
		why = "no reply";
		goto bad;
	}
	if (strchr(reply, '\n')) {
		why = "a newline in the reply";
		goto bad;
	}
	if (!json_parser_load_from_data(parser, reply, -1, NULL)) {
		why = "the reply is not JSON";
		goto bad;
	}
	root = json_parser_get_root(parser);
	if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
		why = "the reply is not an object";
		goto bad;
	}
	obj = json_node_get_object(root);
	ok = json_object_get_member(obj, "ok");
	version = json_object_get_member(obj, "version");
	if (!ok || !JSON_NODE_HOLDS_VALUE(ok) || json_node_get_value_type(ok) != G_TYPE_BOOLEAN) {
		why = "no boolean \"ok\"";
		goto bad;
	}
	if (!version || !JSON_NODE_HOLDS_VALUE(version) ||
	    json_node_get_value_type(version) != G_TYPE_INT64 || json_node_get_int(version) != 1) {
		why = "no \"version\": 1";
		goto bad;
	}
	if (!json_node_get_boolean(ok)) {
		error = json_object_get_member(obj, "error");
		if (!error || !JSON_NODE_HOLDS_VALUE(error) ||
		    json_node_get_value_type(error) != G_TYPE_STRING ||
		    !*json_node_get_string(error)) {
			why = "ok false without an error";
			goto bad;
		}
	}
	return;
bad:
	fprintf(stderr, "fuzz-control: %s\nrequest: %s\nreply: %s\n", why, line,
	        reply ? reply : "(null)");
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uid_t peer;
	char *line, *reply;

	if (size < 1)
		return 0;
	peer = data[0] < 240 ? 0 : 1000 + data[0];
	line = malloc(size);
	if (!line)
		return 0;
	memcpy(line, data + 1, size - 1);
	line[size - 1] = '\0';
	if ((!sandboxed && strstr(line, "start")) ||
	    (skip_surrogates && strcasestr(line, "\\ud"))) {
		free(line);
		return 0;
	}
	reply = control_handle_request(fs, "/mnt", line, peer);
	check_reply(line, reply);
	if (peer != 0 && !strstr(reply, "permission denied")) {
		fprintf(stderr, "fuzz-control: uid %u was not refused: %s\n", (unsigned)peer,
		        reply);
		abort();
	}
	g_free(reply);
	free(line);
	return 0;
}
