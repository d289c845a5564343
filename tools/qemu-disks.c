/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Moving a running QEMU's disk files to another name, for mirrorfsctl's
 * adopt (the source's files onto the same names through the mount) and
 * release (the mount's files onto the target's real paths).
 *
 * QEMU reads its block graph out: query-named-block-nodes for what each
 * node is, x-debug-query-block-graph for who holds whom.  A "file" node
 * (the protocol node holding the descriptor) cannot be reopened onto
 * another file, but its parent, the format node, can be given another file
 * child: blockdev-reopen (QEMU 6.1) re-specifies a node's options, children
 * by reference.  So each moving file gets a new file node, and the format
 * nodes above are reopened with it, the whole backing chain of a disk in
 * one go, every disk in one transaction.
 *
 * What QEMU 7.2 allows, and so the rules here: a node reopened at the top
 * level must have a name of its own (a node QEMU named itself, "#block123",
 * "cannot change the option 'node-name'"); an unnamed backing node is
 * reopened nested in its parent's options; a named one has its own entry
 * and is referred to by name (nesting it "cannot change 'backing.driver'").
 * Options left out revert to their defaults, so each node's driver,
 * read-only, cache and detect-zeroes modes are given again as QEMU reports
 * them; those it does not report (discard, qcow2 cache sizes, aio) return
 * to QEMU's defaults.
 */
#define _GNU_SOURCE
#include "qemu-disks.h"
#include "mfs.h"

#include <errno.h>
#include <string.h>

typedef struct Node Node;
struct Node {
	char *name, *drv, *filename, *detect_zeroes;
	bool ro, direct, no_flush, has_backing_file;
	Node *file, *backing; /* children by edge name */
	char *other_edge;     /* a child edge neither "file" nor "backing" */
	Node *parent;         /* the last parent seen, driver nodes only */
	const char *parent_edge;
	char *parent_other; /* a parent that is not a node: "block-backend 'disk0'" */
	unsigned nparents;
	bool moving, below_moving, emitted;
	const char *rel; /* moving: the file's name under its @from */
	const char *to;  /* moving: where that name goes */
	char *new_name;  /* moving: the node that replaces it */
};

static void node_free(Node *n)
{
	g_free(n->name);
	g_free(n->drv);
	g_free(n->filename);
	g_free(n->detect_zeroes);
	g_free(n->other_edge);
	g_free(n->parent_other);
	g_free(n->new_name);
	g_free(n);
}

static bool node_named(const Node *n)
{
	return n->name[0] != '#';
}

/* The nodes by name, from query-named-block-nodes. */
static int read_nodes(Qmp *q, GHashTable *nodes, char **error)
{
	g_autoptr(JsonNode) args = json_from_string("{\"flat\": true}", NULL);
	g_autoptr(JsonNode) ret = NULL;
	JsonArray *a;
	int r;

	r = qmp_execute(q, "query-named-block-nodes", args, &ret, error);
	if (r < 0)
		return r;
	if (!JSON_NODE_HOLDS_ARRAY(ret))
		goto bad;
	a = json_node_get_array(ret);
	for (guint i = 0; i < json_array_get_length(a); i++) {
		JsonObject *o = json_array_get_object_element(a, i), *c;
		Node *n;

		if (!o || !json_object_has_member(o, "node-name"))
			goto bad;
		n = g_new0(Node, 1);
		n->name = g_strdup(json_object_get_string_member(o, "node-name"));
		n->drv = g_strdup(json_object_get_string_member_with_default(o, "drv", ""));
		n->filename = g_strdup(json_object_get_string_member_with_default(o, "file", ""));
		n->detect_zeroes =
		    g_strdup(json_object_get_string_member_with_default(o, "detect_zeroes", "off"));
		n->ro = json_object_get_boolean_member_with_default(o, "ro", FALSE);
		n->has_backing_file = json_object_has_member(o, "backing_file");
		c = json_object_has_member(o, "cache") ? json_object_get_object_member(o, "cache")
		                                       : NULL;
		if (c) {
			n->direct = json_object_get_boolean_member_with_default(c, "direct", FALSE);
			n->no_flush =
			    json_object_get_boolean_member_with_default(c, "no-flush", FALSE);
		}
		g_hash_table_replace(nodes, n->name, n);
	}
	return 0;
bad:
	*error = g_strdup("query-named-block-nodes: QEMU's reply is not the expected list");
	return -EPROTO;
}

/* Who holds whom, from x-debug-query-block-graph (in QEMU since 4.0). */
static int read_edges(Qmp *q, GHashTable *nodes, char **error)
{
	g_autoptr(JsonNode) ret = NULL;
	g_autoptr(GHashTable) by_id = g_hash_table_new(g_int64_hash, g_int64_equal);
	g_autoptr(GHashTable) other =
	    g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
	JsonArray *gn, *ge;
	JsonObject *o;
	int r;

	r = qmp_execute(q, "x-debug-query-block-graph", NULL, &ret, error);
	if (r < 0)
		return r;
	o = JSON_NODE_HOLDS_OBJECT(ret) ? json_node_get_object(ret) : NULL;
	gn = o && json_object_has_member(o, "nodes") ? json_object_get_array_member(o, "nodes")
	                                             : NULL;
	ge = o && json_object_has_member(o, "edges") ? json_object_get_array_member(o, "edges")
	                                             : NULL;
	if (!gn || !ge) {
		*error = g_strdup("x-debug-query-block-graph: QEMU's reply is not a graph");
		return -EPROTO;
	}
	/* Every id is a key of @other, which owns it; @by_id shares those of driver nodes. */
	for (guint i = 0; i < json_array_get_length(gn); i++) {
		JsonObject *e = json_array_get_object_element(gn, i);
		const char *type = json_object_get_string_member_with_default(e, "type", "");
		const char *name = json_object_get_string_member_with_default(e, "name", "");
		gint64 *id = g_new(gint64, 1);
		Node *n;

		*id = json_object_get_int_member_with_default(e, "id", -1);
		if (!strcmp(type, "block-driver") && (n = g_hash_table_lookup(nodes, name))) {
			g_hash_table_insert(by_id, id, n);
			g_hash_table_insert(other, id, NULL);
		} else {
			g_hash_table_insert(other, id, g_strdup_printf("%s '%s'", type, name));
		}
	}
	for (guint i = 0; i < json_array_get_length(ge); i++) {
		JsonObject *e = json_array_get_object_element(ge, i);
		gint64 pid = json_object_get_int_member_with_default(e, "parent", -1);
		gint64 cid = json_object_get_int_member_with_default(e, "child", -1);
		const char *edge = json_object_get_string_member_with_default(e, "name", "");
		Node *p = g_hash_table_lookup(by_id, &pid), *c = g_hash_table_lookup(by_id, &cid);

		if (!c)
			continue;
		c->nparents++;
		if (!p) {
			const char *what = g_hash_table_lookup(other, &pid);

			g_free(c->parent_other);
			c->parent_other = g_strdup(what ? what : "something QEMU did not name");
			continue;
		}
		c->parent = p;
		c->parent_edge = !strcmp(edge, "file")      ? "file"
		                 : !strcmp(edge, "backing") ? "backing"
		                                            : "other";
		if (!strcmp(edge, "file"))
			p->file = c;
		else if (!strcmp(edge, "backing"))
			p->backing = c;
		else if (!p->other_edge)
			p->other_edge = g_strdup(edge);
	}
	return 0;
}

/*
 * The format node a moving file node @m hangs from, walked up its backing
 * chain to the node to reopen; NULL with *@error when QEMU could not swap
 * @m's file.
 */
static Node *chain_top(Node *m, char **error)
{
	Node *p = m->parent;

	if (m->nparents != 1 || !p || m->parent_edge[0] != 'f') {
		if (m->nparents == 0)
			*error =
			    g_strdup_printf("node '%s' holds %s but nothing uses it: delete it "
			                    "(blockdev-del) and try again",
			                    m->name, m->filename);
		else if (m->parent_other)
			*error = g_strdup_printf(
			    "node '%s' (%s) is attached to %s with no format node between: "
			    "QEMU can only swap a file under a format node (raw, qcow2, ...)",
			    m->name, m->filename, m->parent_other);
		else
			*error = g_strdup_printf("node '%s' (%s) has %u parents: QEMU cannot swap "
			                         "a file that several nodes share",
			                         m->name, m->filename, m->nparents);
		return NULL;
	}
	for (;;) {
		if (p->other_edge) {
			*error = g_strdup_printf("node '%s' (%s) has a '%s' child: only file and "
			                         "backing children can be moved",
			                         p->name, p->drv, p->other_edge);
			return NULL;
		}
		p->below_moving = true;
		if (p->nparents != 1 || !p->parent || p->parent_edge[0] != 'b')
			break;
		p = p->parent;
	}
	if (!node_named(p)) {
		*error = g_strdup_printf(
		    "the disk over %s has no node name of its own (QEMU calls it '%s'), and QEMU "
		    "cannot reopen such a node: start it with -blockdev, or give -drive a "
		    "node-name=NAME",
		    m->filename, p->name);
		return NULL;
	}
	return p;
}

static void add_cache(JsonBuilder *b, const Node *n)
{
	json_builder_set_member_name(b, "cache");
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "direct");
	json_builder_add_boolean_value(b, n->direct);
	json_builder_set_member_name(b, "no-flush");
	json_builder_add_boolean_value(b, n->no_flush);
	json_builder_end_object(b);
}

/*
 * Add @n's reopen options to @b: its own modes again, the new file child
 * where its file moves, the backing chain below as the rules at the top
 * say.  A named backing node that is reopened too goes into @entries.
 */
static void reopen_options(JsonBuilder *b, Node *n, bool with_name, GPtrArray *entries)
{
	n->emitted = true;
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "driver");
	json_builder_add_string_value(b, n->drv);
	if (with_name) {
		json_builder_set_member_name(b, "node-name");
		json_builder_add_string_value(b, n->name);
	}
	json_builder_set_member_name(b, "read-only");
	json_builder_add_boolean_value(b, n->ro);
	add_cache(b, n);
	json_builder_set_member_name(b, "detect-zeroes");
	json_builder_add_string_value(b, n->detect_zeroes);
	if (n->file) {
		json_builder_set_member_name(b, "file");
		json_builder_add_string_value(b,
		                              n->file->moving ? n->file->new_name : n->file->name);
	}
	if (n->backing) {
		json_builder_set_member_name(b, "backing");
		if (n->backing->below_moving && !node_named(n->backing)) {
			reopen_options(b, n->backing, false, entries);
		} else {
			json_builder_add_string_value(b, n->backing->name);
			if (n->backing->below_moving && !n->backing->emitted)
				g_ptr_array_add(entries, n->backing);
		}
	} else if (n->has_backing_file) {
		/* Opened without the backing file its header names: keep it so. */
		json_builder_set_member_name(b, "backing");
		json_builder_add_null_value(b);
	}
	json_builder_end_object(b);
}

static int add_file_node(Qmp *q, Node *m, const char *path, char **error)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	g_autoptr(JsonNode) args = NULL;

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "driver");
	json_builder_add_string_value(b, "file");
	json_builder_set_member_name(b, "node-name");
	json_builder_add_string_value(b, m->new_name);
	json_builder_set_member_name(b, "filename");
	json_builder_add_string_value(b, path);
	json_builder_set_member_name(b, "read-only");
	json_builder_add_boolean_value(b, m->ro);
	add_cache(b, m);
	json_builder_end_object(b);
	args = json_builder_get_root(b);
	return qmp_execute(q, "blockdev-add", args, NULL, error);
}

static int del_node(Qmp *q, const char *name, char **error)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	g_autoptr(JsonNode) args = NULL;

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "node-name");
	json_builder_add_string_value(b, name);
	json_builder_end_object(b);
	args = json_builder_get_root(b);
	return qmp_execute(q, "blockdev-del", args, NULL, error);
}

/* A name for @m's replacement that no node has: "mfs-N". */
static void name_new_node(Node *m, GHashTable *nodes, unsigned *seq)
{
	do {
		g_free(m->new_name);
		m->new_name = g_strdup_printf("mfs-%u", ++*seq);
	} while (g_hash_table_contains(nodes, m->new_name));
}

/* Say, in front of *@error, that QEMU is as it was; returns @r. */
static int qemu_disks_undone(char **error, int r)
{
	g_autofree char *cause = *error;

	*error = g_strdup_printf("QEMU changed nothing: %s", cause);
	return r;
}

static int reopen(Qmp *q, GPtrArray *tops, double *pause_ms, char **error)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	g_autoptr(JsonNode) args = NULL;
	g_autoptr(GPtrArray) entries = g_ptr_array_new();
	double t0;
	int r;

	for (guint i = 0; i < tops->len; i++)
		g_ptr_array_add(entries, tops->pdata[i]);
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "options");
	json_builder_begin_array(b);
	/* reopen_options() may append named backing nodes as it goes. */
	for (guint i = 0; i < entries->len; i++)
		reopen_options(b, entries->pdata[i], true, entries);
	json_builder_end_array(b);
	json_builder_end_object(b);
	args = json_builder_get_root(b);
	t0 = g_get_monotonic_time() / 1e3;
	r = qmp_execute(q, "blockdev-reopen", args, NULL, error);
	*pause_ms += g_get_monotonic_time() / 1e3 - t0;
	return r;
}

int qemu_disks_move(Qmp *q, char *const *from, char *const *to, bool dry_run, GString *report,
                    double *pause_ms, char **error)
{
	g_autoptr(GHashTable) nodes =
	    g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)node_free);
	g_autoptr(GPtrArray) moving = g_ptr_array_new();
	g_autoptr(GPtrArray) tops = g_ptr_array_new();
	GHashTableIter it;
	unsigned seq = 0;
	Node *n;
	int major, minor, r;
	guint added = 0;

	qmp_version(q, &major, &minor);
	if (major < QEMU_DISKS_MIN_MAJOR ||
	    (major == QEMU_DISKS_MIN_MAJOR && minor < QEMU_DISKS_MIN_MINOR)) {
		*error = g_strdup_printf("QEMU %d.%d cannot swap a disk's file while it runs "
		                         "(blockdev-reopen came in %d.%d)",
		                         major, minor, QEMU_DISKS_MIN_MAJOR, QEMU_DISKS_MIN_MINOR);
		return -ENOTSUP;
	}
	r = read_nodes(q, nodes, error);
	if (r == 0)
		r = read_edges(q, nodes, error);
	if (r < 0)
		return r;
	g_hash_table_iter_init(&it, nodes);
	while (g_hash_table_iter_next(&it, NULL, (void **)&n)) {
		guint i;

		if (strcmp(n->drv, "file"))
			continue;
		for (i = 0; from[i] && !(n->rel = mfs_path_within(n->filename, from[i])); i++)
			;
		if (!from[i])
			continue;
		n->to = to[i];
		n->moving = true;
		g_ptr_array_add(moving, n);
	}
	for (guint i = 0; i < moving->len; i++) {
		Node *m = moving->pdata[i], *top = chain_top(m, error);

		if (!top)
			return -ENOTSUP;
		if (!g_ptr_array_find(tops, top, NULL))
			g_ptr_array_add(tops, top);
		name_new_node(m, nodes, &seq);
	}
	for (guint i = 0; i < moving->len; i++) {
		Node *m = moving->pdata[i];
		g_autofree char *path = g_build_filename(m->to, m->rel, NULL);

		g_string_append_printf(report, "%s%s -> %s (node '%s' under '%s')\n",
		                       dry_run ? "would move " : "", m->filename, path, m->name,
		                       m->parent->name);
		if (dry_run)
			continue;
		r = add_file_node(q, m, path, error);
		if (r < 0)
			goto undo;
		added++;
	}
	if (dry_run || !moving->len)
		return (int)moving->len;
	r = reopen(q, tops, pause_ms, error);
	if (r < 0)
		goto undo;
	/* The replaced nodes QEMU opened itself went with their parent's reopen. */
	for (guint i = 0; i < moving->len; i++) {
		Node *m = moving->pdata[i];
		g_autofree char *why = NULL;

		if (node_named(m) && del_node(q, m->name, &why) < 0)
			g_string_append_printf(report, "warning: node '%s' (%s) was left: %s\n",
			                       m->name, m->filename, why);
	}
	return (int)moving->len;
undo:
	for (guint i = 0; i < added; i++) {
		g_autofree char *why = NULL;
		Node *m = moving->pdata[i];

		if (del_node(q, m->new_name, &why) < 0)
			g_string_append_printf(report,
			                       "warning: node '%s' could not be removed: %s\n",
			                       m->new_name, why);
	}
	return qemu_disks_undone(error, r);
}
