/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The control-socket client shared by mirrorfs-status and mirrorfsctl. */
#define _GNU_SOURCE
#include "client.h"
#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *client_socket_path(const char *prog, const char *mountpoint, const char *explicit_path)
{
	g_autofree char *real = NULL, *system = NULL;

	if (explicit_path)
		return g_strdup(explicit_path);
	real = realpath(mountpoint, NULL);
	if (!real) {
		fprintf(stderr, "%s: '%s': %s\n", prog, mountpoint, g_strerror(errno));
		return NULL;
	}
	/* A user asking about root's mount finds its socket where root's daemon put it. */
	if (!g_getenv("MIRRORFS_RUNTIME_DIR") && geteuid() != 0) {
		system = control_socket_path_in(CONTROL_SYSTEM_DIR, real);
		if (g_file_test(system, G_FILE_TEST_EXISTS))
			return g_steal_pointer(&system);
	}
	return control_socket_path(real);
}

JsonObject *client_call(const char *prog, const char *socket_path, const char *request,
                        int timeout_ms, JsonParser **parser)
{
	g_autofree char *reply = NULL, *error = NULL;
	g_autoptr(GError) gerr = NULL;
	JsonNode *root;
	JsonObject *obj;

	if (control_request(socket_path, request, timeout_ms, &reply, &error) < 0) {
		fprintf(stderr, "%s: %s\n", prog, error);
		return NULL;
	}
	*parser = json_parser_new();
	if (!json_parser_load_from_data(*parser, reply, -1, &gerr) ||
	    !(root = json_parser_get_root(*parser)) || !JSON_NODE_HOLDS_OBJECT(root)) {
		fprintf(stderr, "%s: the daemon sent a reply that is not JSON\n", prog);
		return NULL;
	}
	obj = json_node_get_object(root);
	if (!json_object_get_boolean_member_with_default(obj, "ok", FALSE)) {
		fprintf(stderr, "%s: %s\n", prog,
		        json_object_get_string_member_with_default(obj, "error", "request failed"));
		return NULL;
	}
	return obj;
}

char *client_format_bytes(double bytes)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	unsigned u = 0;

	while (bytes >= 1024 && u + 1 < G_N_ELEMENTS(units)) {
		bytes /= 1024;
		u++;
	}
	return u ? g_strdup_printf("%.1f %s", bytes, units[u])
	         : g_strdup_printf("%.0f %s", bytes, units[u]);
}
