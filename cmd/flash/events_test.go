package main

import (
	"strings"
	"testing"
)

func TestParseLogLine(t *testing.T) {
	for _, tc := range []struct {
		line      string
		ok        bool
		msg, step string
		err       string
	}{
		{`time=2026-12-01T02:34:43.379Z level=INFO msg=reconcile role=mothership resource=api action=new step=deployed urls="" err=""`, true, "reconcile", "deployed", ""},
		{`time=x level=INFO msg="reconciliation done" role=mothership version=4`, true, "reconciliation done", "", ""},
		{`level=INFO msg=reconcile step=failed err="deploy: \"x\" exited\nsee log"`, true, "reconcile", "failed", "deploy: \"x\" exited\nsee log"},
		{`{"time":"x","level":"WARN","msg":"slow","step":"deployed","n":3}`, true, "slow", "deployed", ""},
		{`flash: started pipeline/api/64c271337f/0 pid=11917 port=39953`, false, "", "", ""},
		{`panic: runtime error: index out of range`, false, "", "", ""},
		{`level=INFO msg="unterminated`, false, "", "", ""},
		{`level=INFO`, false, "", "", ""},
		{`level=INFO msg=x key="a"b`, false, "", "", ""},
		{``, false, "", "", ""},
		{`{"level":1}`, false, "", "", ""},
	} {
		rec, ok := parseLogLine([]byte(tc.line))
		if ok != tc.ok {
			t.Errorf("%q: ok = %v", tc.line, ok)
			continue
		}
		if !ok {
			continue
		}
		if rec.get("msg") != tc.msg || rec.get("step") != tc.step || rec.get("err") != tc.err {
			t.Errorf("%q: msg %q step %q err %q", tc.line, rec.get("msg"), rec.get("step"), rec.get("err"))
		}
	}
}

func FuzzParseLogLine(f *testing.F) {
	f.Add([]byte(`time=x level=INFO msg=reconcile resource=api step=deployed urls="a b"`))
	f.Add([]byte(`{"level":"ERROR","msg":"x","err":"y"}`))
	f.Add([]byte(`level=WARN msg="a\"b" k=`))
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, ok := parseLogLine(line)
		if !ok {
			return
		}
		if rec.get("level") == "" || rec.get("msg") == "" {
			t.Fatalf("accepted without level and msg: %q", line)
		}
		_ = rec.short("api")
		_ = reconcileLine(rec)
	})
}

func TestReconcileLineAndImportance(t *testing.T) {
	line := func(s string) logRecord {
		r, ok := parseLogLine([]byte(s))
		if !ok {
			t.Fatalf("unparsed: %s", s)
		}
		return r
	}
	for in, want := range map[string]string{
		`level=INFO msg=reconcile resource=api action=new step=deployed`:        "api up",
		`level=INFO msg=reconcile resource=api action=changed step=deployed`:    "api updated",
		`level=INFO msg=reconcile resource=api action=new step=failed err=boom`: "api failed: boom",
		`level=INFO msg=reconcile resource=api action=removed step=undeployed`:  "api removed",
		`level=INFO msg=reconcile resource=api action=new step=published`:       "",
		`level=INFO msg=reconcile resource=api action=changed step=undeploying`: "",
		`level=INFO msg=reconcile resource=api action=unchanged step=unchanged`: "api up (kept running from the previous run)",
	} {
		if got := reconcileLine(line(in)); got != want {
			t.Errorf("%s → %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		`level=WARN msg="endpoint gone" resource=api id=p/api/1 pid=7 err=<nil>`:        "api: the process an earlier run left (pid 7) is gone; starting a new one",
		`level=WARN msg="endpoint exited" resource=api pid=7 err="exit status 2"`:       "api exited (pid 7): exit status 2; restarting it",
		`level=INFO msg="endpoint restarted" resource=api pid=8 url=http://127.0.0.1:9`: "",
		`level=INFO msg="endpoint adopted" resource=api pid=8`:                          "",
	} {
		if got := endpointLine(line(in)); got != want {
			t.Errorf("%s → %q, want %q", in, got, want)
		}
	}
	if line(`level=INFO msg=request path=/x`).important() || !line(`level=WARN msg=x`).important() || !line(`level=ERROR+2 msg=x`).important() {
		t.Error("importance: want WARN and ERROR only")
	}
	if got := line(`time=t level=WARN msg="fetch failed" resource=api err="dial tcp: refused" n=2`).short("api"); got != `WARN fetch failed err="dial tcp: refused" n=2` {
		t.Errorf("short = %s", got)
	}
	if got := line(`level=ERROR msg="stopping an endpoint" role=mothership resource=api err=<nil>`).short(mothershipSource); got != `ERROR stopping an endpoint resource=api` {
		t.Errorf("short = %s", got)
	}
}

func TestLogStreamerQuietByDefault(t *testing.T) {
	var b strings.Builder
	var seen []string
	l := newLogStreamer(&b, false, false, func(r logRecord) { seen = append(seen, r.get("msg")) })
	w := l.writer(mothershipSource)
	w.Write([]byte("level=INFO msg=request path=/flash/status\nlevel=INFO msg=reconcile resource=api action=new step=deployed\n"))
	w.Write([]byte("level=WARN msg=\"slow store\"\nflash: started x\npanic: boom\nlevel=INFO msg=\"reconciliation done\"\n"))
	want := "flash      | api up\nmothership | WARN slow store\nmothership | panic: boom\n"
	if b.String() != want {
		t.Errorf("quiet output:\n%s\nwant:\n%s", b.String(), want)
	}
	if strings.Join(seen, ",") != "request,reconcile,slow store,reconciliation done" {
		t.Errorf("observed %v", seen)
	}
	b.Reset()
	l.stopping.Store(true)
	w.Write([]byte("level=WARN msg=\"fetch manifest failed\"\n"))
	if b.Len() != 0 {
		t.Errorf("while stopping: %q", b.String())
	}
}
