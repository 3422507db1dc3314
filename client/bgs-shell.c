/* bgs-shell.c: readline shell and one-shot runner over one command table */
#include "bgs-shell.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <readline/readline.h>
#include <readline/history.h>

#define SHELL_PROMPT "[bgsync]# "
#define HISTORY_MAX 1000

typedef struct {
	guint id;
	char *text;
	BgsShellAnswer func;
	gpointer user_data;
} Question;

struct _BgsShell {
	const BgsShellCommand *commands;
	gpointer user_data;
	GMainLoop *loop;
	gboolean interactive;
	gboolean in_tty;
	gboolean out_tty;
	gboolean busy;         /* a command owns the foreground */
	gboolean running;      /* one-shot: the command has not called done */
	gboolean quit;
	int status;
	BgsShellInterrupt interrupt;
	gpointer interrupt_data;
	GQueue questions;      /* of Question, the head is being asked */
	guint next_question_id;
	char *prompt;          /* installed readline prompt, NULL when none */
	char *saved_line;      /* a partly typed command line, kept across questions */
	guint stdin_watch;
	GString *inbuf;        /* non-terminal input */
	GQueue lines;          /* non-terminal input lines waiting for the shell */
	char *status_text;     /* the progress line, drawn when no prompt shows */
	gboolean status_shown;
	char *history_path;
	gboolean eof;
	guint sigint_id;
	gboolean dispatching;  /* inside an input line's handling */
};

/* readline's callback interface has no user data */
static BgsShell *the_shell;

static void shell_update_input (BgsShell *shell);
static void shell_execute (BgsShell *shell, const char *line);

static void
question_free (Question *q)
{
	g_free (q->text);
	g_free (q);
}

BgsShell *
bgs_shell_new (const BgsShellCommand *commands, gpointer user_data)
{
	BgsShell *shell = g_new0 (BgsShell, 1);

	shell->commands = commands;
	shell->user_data = user_data;
	shell->loop = g_main_loop_new (NULL, FALSE);
	shell->in_tty = isatty (STDIN_FILENO);
	shell->out_tty = isatty (STDOUT_FILENO);
	shell->inbuf = g_string_new (NULL);
	shell->next_question_id = 1;
	g_queue_init (&shell->questions);
	g_queue_init (&shell->lines);
	the_shell = shell;
	return shell;
}

void
bgs_shell_free (BgsShell *shell)
{
	if (shell == NULL)
		return;
	if (shell->prompt != NULL)
		rl_callback_handler_remove ();
	if (shell->stdin_watch != 0)
		g_source_remove (shell->stdin_watch);
	if (shell->sigint_id != 0)
		g_source_remove (shell->sigint_id);
	g_queue_clear_full (&shell->questions, (GDestroyNotify) question_free);
	g_queue_clear_full (&shell->lines, g_free);
	g_string_free (shell->inbuf, TRUE);
	g_free (shell->prompt);
	g_free (shell->saved_line);
	g_free (shell->status_text);
	g_free (shell->history_path);
	g_main_loop_unref (shell->loop);
	if (the_shell == shell)
		the_shell = NULL;
	g_free (shell);
}

gboolean
bgs_shell_is_interactive (BgsShell *shell)
{
	return shell->interactive;
}

gboolean
bgs_shell_stdout_is_tty (BgsShell *shell)
{
	return shell->out_tty;
}

gboolean
bgs_shell_stdin_is_tty (BgsShell *shell)
{
	return shell->in_tty;
}

const BgsShellCommand *
bgs_shell_get_commands (BgsShell *shell)
{
	return shell->commands;
}

const BgsShellCommand *
bgs_shell_lookup (BgsShell *shell, const char *name)
{
	for (const BgsShellCommand *c = shell->commands; c->name != NULL; c++) {
		if (g_strcmp0 (c->name, name) == 0)
			return c;
	}
	return NULL;
}

/* ---- output ------------------------------------------------------------- */

static void
status_erase (BgsShell *shell)
{
	if (shell->status_shown) {
		fputs ("\r\033[K", stdout);
		shell->status_shown = FALSE;
	}
}

static void
status_draw (BgsShell *shell)
{
	if (shell->status_text == NULL || !shell->out_tty || shell->prompt != NULL)
		return;
	fputs ("\r\033[K", stdout);
	fputs (shell->status_text, stdout);
	fflush (stdout);
	shell->status_shown = TRUE;
}

static void
shell_vprint (BgsShell *shell, FILE *stream, const char *format, va_list args)
{
	g_autofree char *text = g_strdup_vprintf (format, args);
	g_autofree char *saved = NULL;
	int point = 0;

	fflush (stdout);
	status_erase (shell);
	if (shell->prompt != NULL && shell->in_tty && !shell->dispatching) {
		/* take the prompt and what was typed off the screen, print, put back */
		point = rl_point;
		saved = rl_copy_text (0, rl_end);
		rl_save_prompt ();
		rl_replace_line ("", 0);
		rl_redisplay ();
	}
	fputs (text, stream);
	fflush (stream);
	if (saved != NULL) {
		rl_restore_prompt ();
		rl_replace_line (saved, 0);
		rl_point = point;
		rl_redisplay ();
	}
	status_draw (shell);
}

void
bgs_shell_print (BgsShell *shell, const char *format, ...)
{
	va_list args;

	va_start (args, format);
	shell_vprint (shell, stdout, format, args);
	va_end (args);
}

void
bgs_shell_printerr (BgsShell *shell, const char *format, ...)
{
	va_list args;

	va_start (args, format);
	shell_vprint (shell, stderr, format, args);
	va_end (args);
}

void
bgs_shell_status (BgsShell *shell, const char *text)
{
	if (!shell->out_tty)
		return;
	if (text == NULL) {
		/* the line goes away: what it said is printed as a result */
		status_erase (shell);
		fflush (stdout);
		g_clear_pointer (&shell->status_text, g_free);
		return;
	}
	g_free (shell->status_text);
	shell->status_text = g_strdup (text);
	status_draw (shell);
}

void
bgs_shell_print_help (BgsShell *shell, const char *command)
{
	if (command != NULL) {
		const BgsShellCommand *c = bgs_shell_lookup (shell, command);

		if (c == NULL) {
			bgs_shell_printerr (shell, "No such command: %s\n", command);
			return;
		}
		bgs_shell_print (shell, "%s %s\n  %s\n", c->name, c->arg_hint ? c->arg_hint : "",
				 c->description);
		return;
	}
	bgs_shell_print (shell, "Available commands:\n");
	for (const BgsShellCommand *c = shell->commands; c->name != NULL; c++) {
		g_autofree char *left = NULL;

		if (c->shell_only && !shell->interactive)
			continue;
		left = g_strdup_printf ("%s %s", c->name, c->arg_hint ? c->arg_hint : "");
		if (strlen (left) > 44)
			bgs_shell_print (shell, "  %s\n  %-44s %s\n", left, "", c->description);
		else
			bgs_shell_print (shell, "  %-44s %s\n", left, c->description);
	}
}

/* ---- input -------------------------------------------------------------- */

static Question *
active_question (BgsShell *shell)
{
	return g_queue_peek_head (&shell->questions);
}

static const char *
wanted_prompt (BgsShell *shell)
{
	Question *q = active_question (shell);

	if (q != NULL)
		return q->text;
	if (shell->interactive && !shell->busy && !shell->quit)
		return SHELL_PROMPT;
	return NULL;
}

static void
answer_active (BgsShell *shell, const char *answer)
{
	Question *q = g_queue_pop_head (&shell->questions);

	if (q == NULL)
		return;
	q->func (shell, answer, q->user_data);
	question_free (q);
}

static void
rl_line_cb (char *line)
{
	BgsShell *shell = the_shell;

	if (line == NULL) {
		/* Ctrl-D: a question is answered "no", the shell ends */
		if (active_question (shell) != NULL) {
			fputs ("\n", stdout);
			answer_active (shell, NULL);
		} else if (shell->interactive && !shell->busy) {
			fputs ("\n", stdout);
			shell->quit = TRUE;
			g_main_loop_quit (shell->loop);
		}
		shell_update_input (shell);
		return;
	}
	shell->dispatching = TRUE;
	if (active_question (shell) != NULL) {
		answer_active (shell, line);
	} else if (shell->interactive && !shell->busy) {
		if (*line != '\0') {
			HIST_ENTRY *last = history_get (history_base + history_length - 1);

			if (last == NULL || g_strcmp0 (last->line, line) != 0)
				add_history (line);
		}
		/* the handler stays installed across a command that ends at once */
		shell_execute (shell, line);
	}
	free (line);
	/* still dispatching: the accepted line is not a half-typed one */
	shell_update_input (shell);
	shell->dispatching = FALSE;
}

static void
plain_line (BgsShell *shell, char *line)
{
	if (active_question (shell) != NULL) {
		answer_active (shell, line);
		g_free (line);
	} else if (shell->interactive && !shell->busy && g_queue_is_empty (&shell->lines)) {
		shell_execute (shell, line);
		g_free (line);
	} else if (shell->interactive) {
		g_queue_push_tail (&shell->lines, line);
	} else {
		g_free (line);
	}
}

static void
plain_eof (BgsShell *shell)
{
	shell->eof = TRUE;
	/* nobody can answer any more */
	while (active_question (shell) != NULL)
		answer_active (shell, NULL);
	if (shell->interactive && !shell->busy && g_queue_is_empty (&shell->lines)) {
		shell->quit = TRUE;
		g_main_loop_quit (shell->loop);
	}
}

static gboolean
stdin_cb (int fd, GIOCondition cond, gpointer user_data)
{
	BgsShell *shell = user_data;
	char buf[4096];
	gssize n;

	if (shell->in_tty) {
		rl_callback_read_char ();
		return G_SOURCE_CONTINUE;
	}
	n = read (fd, buf, sizeof buf);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return G_SOURCE_CONTINUE;
	if (n <= 0) {
		shell->stdin_watch = 0;
		if (shell->inbuf->len > 0) {
			plain_line (shell, g_strdup (shell->inbuf->str));
			g_string_truncate (shell->inbuf, 0);
		}
		plain_eof (shell);
		shell_update_input (shell);
		return G_SOURCE_REMOVE;
	}
	g_string_append_len (shell->inbuf, buf, n);
	shell->dispatching = TRUE;
	for (;;) {
		char *nl = memchr (shell->inbuf->str, '\n', shell->inbuf->len);
		char *line;

		if (nl == NULL)
			break;
		line = g_strndup (shell->inbuf->str, nl - shell->inbuf->str);
		g_string_erase (shell->inbuf, 0, nl - shell->inbuf->str + 1);
		plain_line (shell, line);
	}
	shell->dispatching = FALSE;
	shell_update_input (shell);
	return G_SOURCE_CONTINUE;
}

/* readline calls this when a fresh line starts (also after a line was
 * handled): put back a command line kept while a question was asked */
static int
shell_pre_input (void)
{
	BgsShell *shell = the_shell;

	if (shell == NULL || shell->saved_line == NULL ||
	    g_strcmp0 (shell->prompt, SHELL_PROMPT) != 0)
		return 0;
	rl_insert_text (shell->saved_line);
	g_clear_pointer (&shell->saved_line, g_free);
	rl_redisplay ();
	return 0;
}

/* installs, changes or removes the prompt and the stdin watch to match the
 * state: a question wins, then the idle shell prompt, else no input */
static void
shell_update_input (BgsShell *shell)
{
	const char *want = wanted_prompt (shell);

	if (!shell->in_tty) {
		Question *q = active_question (shell);
		gboolean need = !shell->eof && (q != NULL || shell->interactive);

		/* questions still show (on stderr, like read -p: stdout may be
		 * JSON), so a script or log sees what was asked */
		if (q != NULL && g_strcmp0 (shell->prompt, q->text) != 0) {
			status_erase (shell);
			fflush (stdout);
			fputs (q->text, stderr);
			fputs ("\n", stderr);
		}
		g_free (shell->prompt);
		shell->prompt = NULL;
		if (q != NULL)
			shell->prompt = g_strdup (q->text);
		if (need && shell->stdin_watch == 0)
			shell->stdin_watch = g_unix_fd_add (STDIN_FILENO, G_IO_IN | G_IO_HUP | G_IO_ERR,
							    stdin_cb, shell);
		else if (!need && shell->stdin_watch != 0) {
			g_source_remove (shell->stdin_watch);
			shell->stdin_watch = 0;
		}
		/* lines typed ahead of a command that has finished */
		while (shell->interactive && !shell->busy && !shell->quit &&
		       active_question (shell) == NULL && !g_queue_is_empty (&shell->lines)) {
			g_autofree char *line = g_queue_pop_head (&shell->lines);
			shell_execute (shell, line);
		}
		if (shell->eof && shell->interactive && !shell->busy && !shell->quit &&
		    g_queue_is_empty (&shell->lines)) {
			shell->quit = TRUE;
			g_main_loop_quit (shell->loop);
		}
		return;
	}

	if (g_strcmp0 (want, shell->prompt) == 0)
		return;
	if (shell->prompt != NULL) {
		/* keep a half-typed command line while a question is asked */
		if (g_strcmp0 (shell->prompt, SHELL_PROMPT) == 0 && rl_end > 0 && !shell->dispatching) {
			g_free (shell->saved_line);
			shell->saved_line = rl_copy_text (0, rl_end);
		}
		rl_replace_line ("", 0);
		if (want != NULL) {
			/* switch prompts without leaving callback mode */
			rl_set_prompt (want);
			g_free (shell->prompt);
			shell->prompt = g_strdup (want);
			status_erase (shell);
			/* after a line readline shows the new prompt by itself, and
			 * the pre-input hook puts a kept line back */
			if (shell->dispatching)
				return;
			if (g_strcmp0 (want, SHELL_PROMPT) == 0 && shell->saved_line != NULL) {
				rl_replace_line (shell->saved_line, 0);
				rl_point = rl_end;
				g_clear_pointer (&shell->saved_line, g_free);
			}
			/* redraw on a clean line: the old prompt is still there */
			fputs ("\r\033[K", rl_outstream ? rl_outstream : stdout);
			rl_on_new_line ();
			rl_redisplay ();
			return;
		}
		rl_callback_handler_remove ();
		g_clear_pointer (&shell->prompt, g_free);
		if (shell->stdin_watch != 0) {
			g_source_remove (shell->stdin_watch);
			shell->stdin_watch = 0;
		}
		status_draw (shell);
		return;
	}
	if (want == NULL || shell->quit)
		return;
	status_erase (shell);
	shell->prompt = g_strdup (want);
	rl_callback_handler_install (want, rl_line_cb);
	if (g_strcmp0 (want, SHELL_PROMPT) == 0 && shell->saved_line != NULL) {
		rl_replace_line (shell->saved_line, 0);
		rl_point = rl_end;
		g_clear_pointer (&shell->saved_line, g_free);
		rl_redisplay ();
	}
	if (shell->stdin_watch == 0)
		shell->stdin_watch = g_unix_fd_add (STDIN_FILENO, G_IO_IN | G_IO_HUP | G_IO_ERR,
						    stdin_cb, shell);
}

guint
bgs_shell_ask (BgsShell *shell, const char *question, BgsShellAnswer func, gpointer user_data)
{
	Question *q = g_new0 (Question, 1);

	q->id = shell->next_question_id++;
	q->text = g_strdup (question);
	q->func = func;
	q->user_data = user_data;
	if (shell->eof) {
		/* nobody will ever answer: say so at once, later */
		guint id = q->id;
		g_queue_push_tail (&shell->questions, q);
		bgs_shell_withdraw (shell, id);
		return id;
	}
	g_queue_push_tail (&shell->questions, q);
	shell_update_input (shell);
	return q->id;
}

void
bgs_shell_withdraw (BgsShell *shell, guint id)
{
	for (GList *l = shell->questions.head; l != NULL; l = l->next) {
		Question *q = l->data;

		if (q->id != id)
			continue;
		g_queue_delete_link (&shell->questions, l);
		q->func (shell, NULL, q->user_data);
		question_free (q);
		break;
	}
	shell_update_input (shell);
}

/* ---- commands ----------------------------------------------------------- */

static void
shell_execute (BgsShell *shell, const char *line)
{
	g_auto(GStrv) argv = NULL;
	g_autoptr(GError) error = NULL;
	const BgsShellCommand *c;
	int argc = 0;

	if (!g_shell_parse_argv (line, &argc, &argv, &error)) {
		/* an empty line is not an error */
		if (g_error_matches (error, G_SHELL_ERROR, G_SHELL_ERROR_EMPTY_STRING))
			return;
		bgs_shell_printerr (shell, "Invalid command line: %s\n", error->message);
		shell->status = 2;
		return;
	}
	c = bgs_shell_lookup (shell, argv[0]);
	if (c == NULL) {
		bgs_shell_printerr (shell, "Invalid command: %s (try help)\n", argv[0]);
		shell->status = 2;
		return;
	}
	shell->busy = TRUE;
	shell->running = TRUE;
	/* the caller updates the prompt afterwards: a command that ends at
	 * once keeps readline's line handler installed */
	c->handler (shell, argc, argv, shell->user_data);
}

void
bgs_shell_done (BgsShell *shell, int status)
{
	shell->status = status;
	shell->busy = FALSE;
	shell->running = FALSE;
	shell->interrupt = NULL;
	shell->interrupt_data = NULL;
	if (shell->status_text != NULL)
		bgs_shell_status (shell, NULL);
	fflush (stdout);
	if (!shell->interactive) {
		g_main_loop_quit (shell->loop);
		return;
	}
	/* inside a line handler the caller updates input afterwards */
	if (!shell->dispatching)
		shell_update_input (shell);
}

void
bgs_shell_quit (BgsShell *shell)
{
	shell->quit = TRUE;
	g_main_loop_quit (shell->loop);
}

void
bgs_shell_release_prompt (BgsShell *shell)
{
	if (!shell->interactive)
		return;
	shell->busy = FALSE;
	shell->running = FALSE;
	shell->interrupt = NULL;
	shell->interrupt_data = NULL;
	shell_update_input (shell);
}

void
bgs_shell_set_interrupt (BgsShell *shell, BgsShellInterrupt func, gpointer user_data)
{
	shell->interrupt = func;
	shell->interrupt_data = user_data;
}

static gboolean
sigint_cb (gpointer user_data)
{
	BgsShell *shell = user_data;

	if (active_question (shell) != NULL) {
		/* Ctrl-C at a question takes it back: the asker's default */
		if (shell->in_tty)
			fputs ("^C\n", stdout);
		rl_replace_line ("", 0);
		answer_active (shell, NULL);
		if (shell->in_tty && shell->prompt != NULL) {
			/* the line was left on screen above; start a fresh one */
			g_clear_pointer (&shell->prompt, g_free);
			rl_callback_handler_remove ();
			if (shell->stdin_watch != 0) {
				g_source_remove (shell->stdin_watch);
				shell->stdin_watch = 0;
			}
		}
		shell_update_input (shell);
		return G_SOURCE_CONTINUE;
	}
	if (shell->busy || (!shell->interactive && shell->running)) {
		if (shell->interrupt != NULL) {
			if (shell->out_tty) {
				status_erase (shell);
				fputs ("\n", stdout);
			}
			shell->interrupt (shell, shell->interrupt_data);
		} else {
			bgs_shell_done (shell, 130);
		}
		return G_SOURCE_CONTINUE;
	}
	if (shell->interactive && shell->in_tty && shell->prompt != NULL) {
		/* like bash: drop the typed line, fresh prompt */
		fputs ("^C\n", stdout);
		rl_replace_line ("", 0);
		rl_on_new_line ();
		rl_redisplay ();
		return G_SOURCE_CONTINUE;
	}
	shell->quit = TRUE;
	g_main_loop_quit (shell->loop);
	return G_SOURCE_CONTINUE;
}

int
bgs_shell_run_once (BgsShell *shell, int argc, char **argv)
{
	const BgsShellCommand *c = bgs_shell_lookup (shell, argv[0]);

	shell->interactive = FALSE;
	if (c == NULL || c->shell_only) {
		g_printerr ("bgsyncctl: unknown command '%s' (see bgsyncctl --help)\n", argv[0]);
		return 2;
	}
	rl_catch_signals = 0;
	shell->sigint_id = g_unix_signal_add (SIGINT, sigint_cb, shell);
	shell->busy = TRUE;
	shell->running = TRUE;
	c->handler (shell, argc, argv, shell->user_data);
	if (shell->running)
		g_main_loop_run (shell->loop);
	if (shell->prompt != NULL && shell->in_tty) {
		rl_callback_handler_remove ();
		g_clear_pointer (&shell->prompt, g_free);
	}
	return shell->status;
}

/* ---- completion --------------------------------------------------------- */

static GPtrArray *completion_candidates;
static guint completion_index;

static char *
completion_generator (const char *text, int state)
{
	if (completion_candidates == NULL)
		return NULL;
	while (completion_index < completion_candidates->len) {
		const char *c = completion_candidates->pdata[completion_index++];

		if (g_str_has_prefix (c, text))
			return strdup (c);
	}
	return NULL;
}

static char **
shell_completion (const char *text, int start, int end)
{
	BgsShell *shell = the_shell;
	g_autofree char *before = g_strndup (rl_line_buffer, start);
	g_auto(GStrv) words = NULL;
	int argn;

	rl_attempted_completion_over = 1;
	if (active_question (shell) != NULL)
		return NULL;
	words = g_strsplit_set (before, " \t", -1);
	/* keep the non-empty words */
	{
		g_autoptr(GPtrArray) kept = g_ptr_array_new ();
		for (guint i = 0; words[i] != NULL; i++) {
			if (*words[i] != '\0')
				g_ptr_array_add (kept, g_strdup (words[i]));
		}
		g_ptr_array_add (kept, NULL);
		g_strfreev (words);
		words = (GStrv) g_ptr_array_free (g_steal_pointer (&kept), FALSE);
	}
	argn = g_strv_length (words);
	g_clear_pointer (&completion_candidates, g_ptr_array_unref);
	completion_index = 0;
	if (argn == 0) {
		completion_candidates = g_ptr_array_new_with_free_func (g_free);
		for (const BgsShellCommand *c = shell->commands; c->name != NULL; c++)
			g_ptr_array_add (completion_candidates, g_strdup (c->name));
	} else {
		const BgsShellCommand *c = bgs_shell_lookup (shell, words[0]);

		if (c == NULL || c->complete == NULL)
			return NULL;
		completion_candidates = c->complete (shell, argn, words, shell->user_data);
	}
	if (completion_candidates == NULL)
		return NULL;
	return rl_completion_matches (text, completion_generator);
}

int
bgs_shell_run_interactive (BgsShell *shell, const char *history_path)
{
	shell->interactive = TRUE;
	rl_catch_signals = 0;
	rl_readline_name = "bgsyncctl";
	rl_attempted_completion_function = shell_completion;
	rl_pre_input_hook = shell_pre_input;
	/* addresses have colons, task names dashes: split on blanks only */
	rl_completer_word_break_characters = (char *) " \t";
	rl_erase_empty_line = 1;
	if (shell->in_tty && history_path != NULL) {
		g_autofree char *dir = g_path_get_dirname (history_path);

		shell->history_path = g_strdup (history_path);
		using_history ();
		stifle_history (HISTORY_MAX);
		if (g_mkdir_with_parents (dir, 0700) == 0)
			read_history (history_path);
	}
	shell->sigint_id = g_unix_signal_add (SIGINT, sigint_cb, shell);
	shell_update_input (shell);
	if (!shell->quit)
		g_main_loop_run (shell->loop);
	if (shell->prompt != NULL && shell->in_tty) {
		rl_callback_handler_remove ();
		g_clear_pointer (&shell->prompt, g_free);
	}
	if (shell->history_path != NULL) {
		if (write_history (shell->history_path) != 0)
			g_debug ("cannot write %s", shell->history_path);
		history_truncate_file (shell->history_path, HISTORY_MAX);
	}
	return shell->status;
}
