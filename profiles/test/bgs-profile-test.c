/* bgs-profile-test.c: the "test" entry point, driven over a socket.
 *
 * Tests and demos pass one end of a socketpair as the "channel" fd and
 * script the instance line by line (see doc/dbus-api.md): every line is
 * device I/O for the idle rule, so the test controls exactly what the
 * runtime policies see. Only available with EnableTestProfile=true. */
#include "bgs-profile-test.h"


#include <string.h>
#include <unistd.h>

#include "bgs-error.h"

#define TEST_MAX_LINE 4096

typedef struct {
	BgsRun *run; /* unowned: the run owns us */
	GSocket *socket;
	GSource *source;
	GString *buf;
} TestRun;

static void
test_run_free (gpointer data)
{
	TestRun *t = data;

	if (t->source != NULL) {
		g_source_destroy (t->source);
		g_source_unref (t->source);
	}
	if (t->socket != NULL)
		g_socket_close (t->socket, NULL);
	g_clear_object (&t->socket);
	g_string_free (t->buf, TRUE);
	g_free (t);
}

static void
test_write (TestRun *t, const char *line)
{
	g_autofree char *msg = g_strdup_printf ("%s\n", line);
	gssize n;

	/* blocking on a local socketpair the test drains; best effort */
	n = g_socket_send (t->socket, msg, strlen (msg), NULL, NULL);
	if (n > 0)
		bgs_run_note_io (t->run, 0, (guint64) n);
}

static void
test_stop_watching (TestRun *t)
{
	if (t->source != NULL) {
		g_source_destroy (t->source);
		g_clear_pointer (&t->source, g_source_unref);
	}
}

/* returns FALSE once the run is finished */
static gboolean
test_handle_line (TestRun *t, const char *line)
{
	if (g_str_has_prefix (line, "progress ")) {
		g_autofree char *rest = NULL;
		guint64 percent = 0;
		char *end = NULL;

		percent = g_ascii_strtoull (line + 9, &end, 10);
		if (end == line + 9 || percent > 100) {
			test_write (t, "error bad progress");
			return TRUE;
		}
		while (*end == ' ')
			end++;
		bgs_run_progress (t->run, (guint) percent, end);
	} else if (g_str_has_prefix (line, "echo ")) {
		test_write (t, line);
	} else if (g_strcmp0 (line, "ping") == 0) {
		/* I/O only */
	} else if (g_str_has_prefix (line, "estimate ")) {
		guint64 secs = g_ascii_strtoull (line + 9, NULL, 10);
		bgs_run_set_estimate (t->run, (guint) MIN (secs, G_MAXUINT32));
	} else if (g_strcmp0 (line, "complete") == 0) {
		test_stop_watching (t);
		bgs_run_complete (t->run, TRUE, "", "");
		return FALSE;
	} else if (g_str_has_prefix (line, "fail ")) {
		test_stop_watching (t);
		bgs_run_complete (t->run, FALSE, "org.bgsync.Error.Failed", line + 5);
		return FALSE;
	} else {
		test_write (t, "error unknown command");
	}
	return TRUE;
}

static gboolean
test_readable_cb (GSocket *socket, GIOCondition cond, gpointer user_data)
{
	TestRun *t = user_data;
	BgsRun *run = t->run;
	char chunk[1024];
	gssize n;
	g_autoptr(GError) error = NULL;

	n = g_socket_receive (socket, chunk, sizeof chunk, NULL, &error);
	if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
		return G_SOURCE_CONTINUE;
	if (n <= 0) {
		g_clear_pointer (&t->source, g_source_unref);
		bgs_run_complete (run, FALSE, "org.bgsync.Error.IO", "channel closed");
		return G_SOURCE_REMOVE;
	}
	bgs_run_note_io (run, (guint64) n, 0);
	g_string_append_len (t->buf, chunk, n);
	for (;;) {
		char *nl = memchr (t->buf->str, '\n', t->buf->len);
		g_autofree char *line = NULL;

		if (nl == NULL)
			break;
		line = g_strndup (t->buf->str, nl - t->buf->str);
		g_string_erase (t->buf, 0, nl - t->buf->str + 1);
		if (!g_utf8_validate (line, -1, NULL)) {
			test_write (t, "error invalid utf-8");
			continue;
		}
		/* after complete/fail the run may already be gone from under us */
		if (!test_handle_line (t, line))
			return G_SOURCE_REMOVE;
	}
	if (t->buf->len > TEST_MAX_LINE) {
		g_clear_pointer (&t->source, g_source_unref);
		bgs_run_complete (run, FALSE, "org.bgsync.Error.Protocol", "line too long");
		return G_SOURCE_REMOVE;
	}
	return G_SOURCE_CONTINUE;
}

static void
test_start (BgsRun *run)
{
	TestRun *t;
	int fd = bgs_run_steal_fd (run, "channel");
	g_autoptr(GError) error = NULL;

	if (fd < 0) {
		/* custom triggers carry no fds: done at once, echoing the data */
		g_autofree char *msg = g_strdup_printf ("data: %s", bgs_run_get_arguments (run));
		bgs_run_complete (run, TRUE, "", msg);
		return;
	}
	t = g_new0 (TestRun, 1);
	t->run = run;
	t->buf = g_string_new (NULL);
	t->socket = g_socket_new_from_fd (fd, &error);
	if (t->socket == NULL) {
		close (fd);
		test_run_free (t);
		bgs_run_complete_error (run, error);
		return;
	}
	g_socket_set_blocking (t->socket, FALSE);
	bgs_run_set_profile_data (run, t, test_run_free);
	t->source = g_socket_create_source (t->socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
	g_source_set_callback (t->source, G_SOURCE_FUNC (test_readable_cb), t, NULL);
	g_source_attach (t->source, NULL);
	test_write (t, "started");
}

static void
test_cancel (BgsRun *run, BgsCancelReason reason)
{
	TestRun *t = bgs_run_get_profile_data (run);
	g_autofree char *line = NULL;

	if (t == NULL)
		return;
	test_stop_watching (t);
	line = g_strdup_printf ("canceled %s", bgs_cancel_reason_to_string (reason));
	test_write (t, line);
	g_socket_close (t->socket, NULL);
}

static const BgsProfile test_profile = {
	.name = "test",
	.triggers = BGS_PROFILE_TRIGGER (BGS_TRIGGER_DEVICE_USE) |
		    BGS_PROFILE_TRIGGER (BGS_TRIGGER_DEVICE_SERVICING) |
		    BGS_PROFILE_TRIGGER (BGS_TRIGGER_CUSTOM),
	.testing_only = TRUE,
	.start = test_start,
	.cancel = test_cancel,
};

void
bgs_profile_test_register (void)
{
	bgs_profile_register (&test_profile);
	bgs_profile_test_rfcomm_register ();
}
