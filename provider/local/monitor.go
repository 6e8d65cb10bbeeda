package local

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"
)

// startMonitorsLocked starts one monitor per replica rs of d, and the log
// rotation the first time. p.mu is held and p is open.
func (p *Provider) startMonitorsLocked(d *deployment, rs []*replica) {
	p.rotator.Do(func() {
		p.wg.Add(1)
		go p.rotateLogs()
	})
	for _, r := range rs {
		r.stop = make(chan struct{})
		r.done = make(chan struct{})
		p.wg.Add(1)
		go p.monitor(d, r)
	}
}

// stopMonitor stops r's monitor and waits for it. Only the caller that took d
// out of p.deps calls it, so it runs once per replica.
func (p *Provider) stopMonitor(r *replica) {
	if r.done == nil {
		return
	}
	close(r.stop)
	<-r.done
}

// monitor restarts r's process whenever it ends, with exponential backoff,
// until r is undeployed or p is closed.
func (p *Provider) monitor(d *deployment, r *replica) {
	defer p.wg.Done()
	defer close(r.done)
	backoff := p.minBackoff
	for {
		p.mu.Lock()
		pr := r.proc
		p.mu.Unlock()
		if !p.waitExit(d, r, pr) {
			return
		}
		if time.Since(pr.started) >= p.resetAfter {
			backoff = p.minBackoff // it ran long enough: a fresh failure, not a crash loop
		}
		if pr.pid > 0 { // pid 0: a replica Adopt found dead, already reported as gone
			p.mu.Lock()
			ev := Event{Resource: d.resource, ID: d.id, Replica: r.index, Kind: EventExited,
				PID: pr.pid, URL: r.url(), Err: pr.exitErr(), Restarts: r.restarts}
			p.mu.Unlock()
			p.emit(ev)
			p.appendLog(d.resource, fmt.Sprintf("flash: %s pid=%d exited (%v); restarting in %s", r.id, pr.pid, ev.Err, backoff))
		}
		for {
			if !p.pause(r, backoff) {
				return
			}
			backoff = min(backoff*2, p.maxBackoff)
			err := p.restart(d, r)
			if err == nil {
				break
			}
			p.mu.Lock()
			ev := Event{Resource: d.resource, ID: d.id, Replica: r.index, Kind: EventExited,
				URL: r.url(), Err: fmt.Errorf("restart: %w", err), Restarts: r.restarts}
			p.mu.Unlock()
			p.emit(ev)
		}
	}
}

// waitExit waits for pr to end and reports true, or false when the monitor must stop.
func (p *Provider) waitExit(d *deployment, r *replica, pr *proc) bool {
	if pr.exited != nil {
		select {
		case <-pr.exited:
		case <-r.stop:
			return false
		case <-p.ctx.Done():
			return false
		}
	} else {
		// Not our child: we cannot wait(2) for it, so poll.
		tick := time.NewTicker(p.pollEvery)
		defer tick.Stop()
		for !gone(pr, d.binary, r.id) {
			select {
			case <-tick.C:
			case <-r.stop:
				return false
			case <-p.ctx.Done():
				return false
			}
		}
	}
	return p.pause(r, 0)
}

// pause waits for d and reports true, or false when the monitor must stop.
func (p *Provider) pause(r *replica, d time.Duration) bool {
	select { // a stop wins over a ready timer
	case <-r.stop:
		return false
	case <-p.ctx.Done():
		return false
	default:
	}
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-r.stop:
		return false
	case <-p.ctx.Done():
		return false
	}
}

// restart starts r again, on its port when that is free, else on a new one
// (then the record follows and OnChange is told).
func (p *Provider) restart(d *deployment, r *replica) error {
	p.mu.Lock()
	old := r.port
	p.mu.Unlock()
	ln, err := listenLoopback(old)
	if err != nil {
		if ln, err = listenLoopback(0); err != nil {
			return err
		}
	}
	port := ln.Addr().(*net.TCPAddr).Port
	pr, err := p.start(d, r, ln)
	ln.Close()
	if err != nil {
		return err
	}
	p.mu.Lock()
	r.port, r.proc = port, pr
	r.restarts++
	ev := Event{Resource: d.resource, ID: d.id, Replica: r.index, Kind: EventRestarted,
		PID: pr.pid, URL: r.url(), Restarts: r.restarts}
	ep := d.endpointLocked()
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := p.record(ctx, d, r); err != nil {
		p.log.Error("recording a restarted endpoint", "id", r.id, "err", err)
	}
	p.emit(ev)
	if port != old && p.cfg.OnChange != nil {
		p.cfg.OnChange(ep)
	}
	return nil
}

// appendLog adds one line of ours to the resource's log, best effort.
func (p *Provider) appendLog(resource, line string) {
	f, err := os.OpenFile(p.logPath(resource), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}
