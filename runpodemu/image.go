package runpodemu

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/flash-go/flash/internal/oci"
)

// Images: an endpoint's workers run its image's entrypoint binary, pulled
// from the registry the image names and unpacked (a flash image holds one
// static binary; there is no container runtime). An image that cannot be
// pulled (no such registry offline, say) leaves the endpoint's args as the
// start command. Pulls are anonymous: the emulator keeps no registry
// credentials (Runpod's /v2/registries is not emulated).

const pullTimeout = 2 * time.Minute

// imageState is the pull of one endpoint's current image.
type imageState struct {
	ref  string
	done bool
	img  *oci.Extracted // nil when the pull failed
	err  error
}

// imageLocked reports whether the endpoint's image is settled (pulled or
// known not to be pullable), starting its pull when it is not.
func (e *Emulator) imageLocked(run *endpointRun) bool {
	ref := run.rec.Image
	if st := run.img; st != nil && st.ref == ref {
		return st.done
	}
	st := &imageState{ref: ref}
	run.img = st
	dir := filepath.Join(e.cfg.Dir, "images", run.rec.ID) // the binary is replaced by rename: running workers keep theirs
	e.loops.Add(1)
	go func() {
		defer e.loops.Done()
		ctx, cancel := context.WithTimeout(e.ctx, pullTimeout)
		img, err := oci.Extract(ctx, ref, dir, nil)
		cancel()
		e.mu.Lock()
		defer e.mu.Unlock()
		if run.img != st {
			return // the image changed meanwhile
		}
		st.done, st.img, st.err = true, img, err
		if err != nil {
			e.log.Info("image not pulled: workers run the endpoint's args", "endpoint", run.rec.ID, "image", ref, "err", err)
		} else {
			e.log.Info("image pulled", "endpoint", run.rec.ID, "image", ref, "binary", img.Binary)
		}
		if !run.deleted && !e.closed {
			e.scaleLocked(run, time.Now())
		}
	}()
	return false
}

// imageCommand is the shell line that starts an unpacked image: its
// entrypoint binary with the image's arguments, or with args instead when
// the endpoint sets them (as Runpod's args replace the image's command).
func imageCommand(img *oci.Extracted, args string) string {
	line := "exec " + shellQuote(img.Binary)
	if strings.TrimSpace(args) != "" {
		return line + " " + args
	}
	if len(img.Args) > 0 {
		line += " " + shellQuote(img.Args...)
	}
	return line
}

func shellQuote(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
