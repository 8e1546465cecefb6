package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/emergent-sh/emergent/engine"
)

// engineStateFile is where, under --storage.path, the evaluation state is saved at shutdown and
// loaded at start: a restart then evaluates the steps since instead of reading history back.
const engineStateFile = "engine-state.gob"

// saveState writes the engine's state under the storage path, through a temporary file renamed
// into place, so a crash while writing leaves the previous file or none, never half of one.
func (d *Daemon) saveState(eng *engine.Engine) {
	if d.opts.StoragePath == "" || !eng.Bootstrapped() {
		return
	}
	began := time.Now()
	path := filepath.Join(d.opts.StoragePath, engineStateFile)
	err := func() error {
		f, err := os.CreateTemp(d.opts.StoragePath, engineStateFile+".*")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name()) // after the rename, nothing to remove
		if err := eng.SaveState(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return os.Rename(f.Name(), path)
	}()
	if err != nil {
		d.logger.Error("saving the evaluation state failed; the next start reads history back", "file", path, "err", err)
		return
	}
	info, _ := os.Stat(path)
	var size int64
	if info != nil {
		size = info.Size()
	}
	d.logger.Info("evaluation state saved", "file", path, "bytes", size, "took", time.Since(began).Round(time.Millisecond))
}

// loadState loads the state a previous process saved, if it fits this configuration and now;
// it reports whether it did. A file that does not fit is left for the next shutdown to replace.
func (d *Daemon) loadState(eng *engine.Engine, now time.Time) bool {
	if d.opts.StoragePath == "" {
		return false
	}
	path := filepath.Join(d.opts.StoragePath, engineStateFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err == nil {
		defer f.Close()
		began := time.Now()
		if err = eng.LoadState(f, now); err == nil {
			d.logger.Info("evaluation state loaded; evaluating the steps since its last", "file", path,
				"last_step", eng.LastStep().UTC().Format(time.RFC3339), "took", time.Since(began).Round(time.Millisecond))
			return true
		}
	}
	level := d.logger.Warn
	if errors.Is(err, engine.ErrStateMismatch) {
		level = d.logger.Info
	}
	level("not using the saved evaluation state; reading history back", "file", path, "reason", fmt.Sprint(err))
	return false
}
