package bot

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/vm"
)

// Held machines: the VM of a failed attempt whose context says hold:
// is saved as it is (vm.Hold) into the workspace, and stored beside the
// attempt's log (store.HeldName), where `turtles debug` fetches it with
// the log's access.

// heldFile is the held machine in the workspace, until it is stored.
const heldFile = "held-vm.tar.gz"

// holdTimeout bounds saving and compressing a machine.
const holdTimeout = 10 * time.Minute

// hold saves m, whose attempt failed, into the workspace, unless the
// task had secrets and its context did not opt in, or this bot holds no
// machines. What it does and why not goes to the task's log: the outcome
// stays the test's.
func (r runner) hold(ctx context.Context, t turtles.Task, m *vm.Machine, ws workspace, out io.Writer) {
	switch {
	case r.noStore:
		logf(out, "not holding the VM: turtles run has no store to keep it in (a bot keeps it beside the log)")
		return
	case len(r.secrets) > 0 && t.Hold != turtles.HoldWithSecrets:
		logf(out, "not holding the VM: this task was given secrets, which its memory holds; hold: %s holds it anyway", turtles.HoldWithSecrets)
		return
	case r.vm.HoldLimit <= 0:
		logf(out, "not holding the VM: holding is off here (--hold-limit 0)")
		return
	}
	logf(out, "holding the failed VM %s for turtles debug", m.Name)
	hctx, cancel := context.WithTimeout(ctx, holdTimeout)
	defer cancel()
	began := time.Now()
	path := filepath.Join(ws.dir, heldFile)
	meta, err := m.Hold(hctx, path, r.vm.HoldLimit, t.Image)
	var tl *vm.HoldTooLargeError
	switch {
	case errors.As(err, &tl):
		logf(out, "not holding the VM: %v (--hold-limit)", tl)
		return
	case err != nil:
		logf(out, "could not hold the VM (the cause is in the bot's log)")
		if r.vm.Log != nil {
			r.vm.Log.Warn("hold VM", "task", t.Key(), "err", err)
		}
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	logf(out, "held the VM in %s: %d MiB compressed (%d MiB of memory, %d MiB of disk changes)",
		time.Since(began).Round(100*time.Millisecond), fi.Size()>>20, meta.MemorySize>>20, meta.OverlaySize>>20)
}

// uploadHeld stores the machine hold left in the workspace, if any,
// beside the attempt's log, and says in the log how to resume it. A
// machine that cannot be stored is said so in the log: the outcome stays
// the test's.
func (b *Bot) uploadHeld(ctx context.Context, t turtles.Task, prefix, logURL string, ws workspace, out io.Writer, log *slog.Logger) {
	f, err := os.Open(filepath.Join(ws.dir, heldFile))
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err == nil {
		defer f.Close()
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil {
			err = b.cfg.Store.Put(ctx, prefix+store.HeldName, io.NewSectionReader(f, 0, fi.Size()), "application/gzip")
		}
	}
	if err != nil {
		logf(out, "could not store the held VM (the cause is in the log of bot %s)", b.cfg.Name)
		log.Error("store held VM", "err", err)
		return
	}
	if logURL != "" {
		logf(out, "the failed VM is held: resume it with   turtles debug %s", logURL)
		return
	}
	// Bots do not know where the pages are served; the page says it all.
	logf(out, "the failed VM is held: resume it with   turtles debug URL   where URL is this attempt's page (…/tasks/%s/%d), which shows the command in full",
		t.ID(), t.Attempt)
}
