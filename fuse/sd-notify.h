/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * systemd's readiness protocol, spoken by hand (sd_notify(3)): one
 * datagram of "KEY=value" lines to the socket $NOTIFY_SOCKET names.  No
 * libsystemd: it is the whole of what we need of it, and hosts without
 * systemd need nothing.  A unit with Type=notify then starts the units
 * ordered after it (the hypervisor) only once the mount serves.
 */
#ifndef MIRRORFS_SD_NOTIFY_H
#define MIRRORFS_SD_NOTIFY_H

/*
 * Send @state ("READY=1\nSTATUS=...") where $NOTIFY_SOCKET says, if it
 * says.  0 when sent or not asked for; -errno otherwise (the daemon
 * serves anyway: the caller says so once).
 */
int sd_notify_send(const char *state);

#endif /* MIRRORFS_SD_NOTIFY_H */
