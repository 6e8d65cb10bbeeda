package local

import (
	"strings"
	"testing"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/provider"
)

func TestFactorySettings(t *testing.T) {
	env := map[string]string{"FLASH_LOG_MAX_SIZE": "1048576", "FLASH_LOG_KEEP": "5"}
	setup := provider.Setup{App: "a", Dir: layout.In(t.TempDir()).App("a"), Store: newTestStore(t), Getenv: func(k string) string { return env[k] }}
	p, err := Factory(t.Context(), setup)
	if err != nil {
		t.Fatal(err)
	}
	lp := p.(*Provider)
	defer lp.Close()
	if lp.cfg.LogMaxSize != 1<<20 || lp.cfg.LogKeep != 5 || lp.cfg.LogDir != setup.Dir.Logs() {
		t.Errorf("config: %+v", lp.cfg)
	}
	for _, bad := range []string{"0", "-1", "1MB"} {
		env["FLASH_LOG_KEEP"] = bad
		if _, err := Factory(t.Context(), setup); err == nil || !strings.Contains(err.Error(), "FLASH_LOG_KEEP") {
			t.Errorf("FLASH_LOG_KEEP=%s: %v", bad, err)
		}
	}
}
