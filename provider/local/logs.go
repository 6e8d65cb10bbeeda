package local

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// rotateLogs rotates the logs in LogDir that grew beyond LogMaxSize, every
// rotateEvery, until p is closed.
func (p *Provider) rotateLogs() {
	defer p.wg.Done()
	tick := time.NewTicker(p.rotateEvery)
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-tick.C:
		}
		paths, _ := filepath.Glob(filepath.Join(p.cfg.LogDir, "*.log"))
		for _, path := range paths {
			if logSize(path) <= p.cfg.LogMaxSize {
				continue
			}
			if err := rotate(path, p.cfg.LogKeep); err != nil {
				p.log.Warn("log rotation failed", "file", path, "err", err)
			}
		}
	}
}

// rotate copies path to path.1, after shifting path.1 … path.<keep-1> up by
// one (the oldest is dropped), then empties path. Children keep writing to
// their descriptor of path (opened O_APPEND), so their next line starts the
// emptied file; lines written between the copy and the truncation are lost.
func rotate(path string, keep int) error {
	for i := keep - 1; i >= 1; i-- {
		err := os.Rename(path+"."+strconv.Itoa(i), path+"."+strconv.Itoa(i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := copyFile(path, path+".1"); err != nil {
		return err
	}
	return os.Truncate(path, 0)
}

// copyFile copies src to dst through a temporary file, so that dst is never half written.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
