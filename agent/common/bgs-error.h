/* bgs-error.h: the org.bgsync.Error domain, registered once for D-Bus */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define BGS_ERROR (bgs_error_quark ())

/* keep in step with the table in bgs-error.c and doc/dbus-api.md */
typedef enum {
	BGS_ERROR_FAILED,          /* org.bgsync.Error.Failed */
	BGS_ERROR_INVALID_ARGS,    /* org.bgsync.Error.InvalidArgs */
	BGS_ERROR_NOT_AUTHORIZED,  /* org.bgsync.Error.NotAuthorized */
	BGS_ERROR_NOT_FOUND,       /* org.bgsync.Error.NotFound */
	BGS_ERROR_ALREADY_EXISTS,  /* org.bgsync.Error.AlreadyExists */
	BGS_ERROR_UNKNOWN_APP,     /* org.bgsync.Error.UnknownApp */
	BGS_ERROR_LIMIT_EXCEEDED,  /* org.bgsync.Error.LimitExceeded */
	BGS_ERROR_NOT_RUNNING,     /* org.bgsync.Error.NotRunning */
	BGS_ERROR_NOT_SUPPORTED,   /* org.bgsync.Error.NotSupported */
	BGS_ERROR_BUSY,            /* org.bgsync.Error.Busy */
	BGS_ERROR_CORRUPT,         /* org.bgsync.Error.Corrupt: stored data unreadable */
	BGS_ERROR_TIMED_OUT,       /* org.bgsync.Error.TimedOut */
	BGS_ERROR_IO,              /* org.bgsync.Error.IO */
	BGS_ERROR_CANCELED,        /* org.bgsync.Error.Canceled */
	BGS_ERROR_PROTOCOL,        /* org.bgsync.Error.Protocol: a peer broke its protocol */
	BGS_ERROR_LAST
} BgsError;

GQuark bgs_error_quark (void);
const char *bgs_error_to_dbus_name (BgsError code);

/* a copy of @error in the BGS_ERROR domain (other domains become Failed,
 * message kept), so every D-Bus reply carries an org.bgsync.Error name */
GError *bgs_error_to_dbus (const GError *error);

G_END_DECLS
