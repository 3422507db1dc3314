/* bgs-shell.h: one command table for bgsyncctl's interactive shell and its
 * one-shot mode (the shape of BlueZ's src/shared/shell.c: name, argument
 * hint, description, completion generator, handler).
 *
 * Handlers are asynchronous: they start their work and call
 * bgs_shell_done() with an exit status when it has finished. The shell
 * owns the terminal: questions (consent prompts, "cancel the task?") and
 * output printed while the prompt is shown go through it. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _BgsShell BgsShell;

/* argv[0] is the command name */
typedef void (*BgsShellHandler) (BgsShell *shell, int argc, char **argv, gpointer user_data);
/* candidates for the argument at position @argn (1 = first argument);
 * @argv holds the words before it. Returns a new array of strings or NULL */
typedef GPtrArray *(*BgsShellCompleter) (BgsShell *shell, int argn, char **argv,
					 gpointer user_data);
/* the user pressed Ctrl-C while the command ran */
typedef void (*BgsShellInterrupt) (BgsShell *shell, gpointer user_data);
/* @answer is NULL when the question was withdrawn or input ended */
typedef void (*BgsShellAnswer) (BgsShell *shell, const char *answer, gpointer user_data);

typedef struct {
	const char *name;
	const char *arg_hint;
	const char *description;
	BgsShellCompleter complete;
	BgsShellHandler handler;
	/* runs in the interactive shell only (help, quit) */
	gboolean shell_only;
} BgsShellCommand;

BgsShell *bgs_shell_new (const BgsShellCommand *commands, gpointer user_data);
void bgs_shell_free (BgsShell *shell);

/* runs one command and returns its exit status */
int bgs_shell_run_once (BgsShell *shell, int argc, char **argv);
/* reads commands until quit or end of input; returns the last status */
int bgs_shell_run_interactive (BgsShell *shell, const char *history_path);

gboolean bgs_shell_is_interactive (BgsShell *shell);
/* stdout is a terminal (progress bars, colour allowed) */
gboolean bgs_shell_stdout_is_tty (BgsShell *shell);
/* stdin is a terminal (questions can be asked) */
gboolean bgs_shell_stdin_is_tty (BgsShell *shell);

/* the running command finished with @status */
void bgs_shell_done (BgsShell *shell, int status);
/* the running command keeps going in the background of the shell (agent
 * on): the prompt comes back; in one-shot mode it keeps the program alive
 * until bgs_shell_done() */
void bgs_shell_release_prompt (BgsShell *shell);
/* leaves the interactive shell after the running command */
void bgs_shell_quit (BgsShell *shell);
void bgs_shell_set_interrupt (BgsShell *shell, BgsShellInterrupt func, gpointer user_data);

/* asks on the terminal; answers come in order of asking. Returns an id
 * for bgs_shell_withdraw() */
guint bgs_shell_ask (BgsShell *shell, const char *question, BgsShellAnswer func,
		     gpointer user_data);
void bgs_shell_withdraw (BgsShell *shell, guint id);

/* output that keeps the prompt and a progress line intact */
void bgs_shell_print (BgsShell *shell, const char *format, ...) G_GNUC_PRINTF (2, 3);
void bgs_shell_printerr (BgsShell *shell, const char *format, ...) G_GNUC_PRINTF (2, 3);
/* a line redrawn in place (terminal only); NULL ends it */
void bgs_shell_status (BgsShell *shell, const char *text);

const BgsShellCommand *bgs_shell_lookup (BgsShell *shell, const char *name);
const BgsShellCommand *bgs_shell_get_commands (BgsShell *shell);
/* help for all commands or one */
void bgs_shell_print_help (BgsShell *shell, const char *command);

G_END_DECLS
