/* bgs-error.c: the org.bgsync.Error domain */
#include "bgs-error.h"

#include <gio/gio.h>

static const GDBusErrorEntry bgs_error_entries[] = {
	{ BGS_ERROR_FAILED, "org.bgsync.Error.Failed" },
	{ BGS_ERROR_INVALID_ARGS, "org.bgsync.Error.InvalidArgs" },
	{ BGS_ERROR_NOT_AUTHORIZED, "org.bgsync.Error.NotAuthorized" },
	{ BGS_ERROR_NOT_FOUND, "org.bgsync.Error.NotFound" },
	{ BGS_ERROR_ALREADY_EXISTS, "org.bgsync.Error.AlreadyExists" },
	{ BGS_ERROR_UNKNOWN_APP, "org.bgsync.Error.UnknownApp" },
	{ BGS_ERROR_LIMIT_EXCEEDED, "org.bgsync.Error.LimitExceeded" },
	{ BGS_ERROR_NOT_RUNNING, "org.bgsync.Error.NotRunning" },
	{ BGS_ERROR_NOT_SUPPORTED, "org.bgsync.Error.NotSupported" },
	{ BGS_ERROR_BUSY, "org.bgsync.Error.Busy" },
	{ BGS_ERROR_CORRUPT, "org.bgsync.Error.Corrupt" },
	{ BGS_ERROR_TIMED_OUT, "org.bgsync.Error.TimedOut" },
	{ BGS_ERROR_IO, "org.bgsync.Error.IO" },
	{ BGS_ERROR_CANCELED, "org.bgsync.Error.Canceled" },
	{ BGS_ERROR_PROTOCOL, "org.bgsync.Error.Protocol" },
};

G_STATIC_ASSERT (G_N_ELEMENTS (bgs_error_entries) == BGS_ERROR_LAST);

GQuark
bgs_error_quark (void)
{
	static gsize quark = 0;

	g_dbus_error_register_error_domain ("bgsync-error-quark",
					    &quark,
					    bgs_error_entries,
					    G_N_ELEMENTS (bgs_error_entries));
	return (GQuark) quark;
}

const char *
bgs_error_to_dbus_name (BgsError code)
{
	if ((guint) code >= BGS_ERROR_LAST)
		code = BGS_ERROR_FAILED;
	return bgs_error_entries[code].dbus_error_name;
}

GError *
bgs_error_to_dbus (const GError *error)
{
	if (error == NULL)
		return g_error_new_literal (BGS_ERROR, BGS_ERROR_FAILED, "unknown error");
	if (error->domain == BGS_ERROR)
		return g_error_copy (error);
	if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
		return g_error_new_literal (BGS_ERROR, BGS_ERROR_CANCELED, error->message);
	if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
		return g_error_new_literal (BGS_ERROR, BGS_ERROR_TIMED_OUT, error->message);
	if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT) ||
	    g_error_matches (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE))
		return g_error_new_literal (BGS_ERROR, BGS_ERROR_INVALID_ARGS, error->message);
	return g_error_new_literal (BGS_ERROR, BGS_ERROR_FAILED, error->message);
}
