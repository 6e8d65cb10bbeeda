package runpod

import (
	"testing"

	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/provider/providertest"
	"github.com/flash-go/flash/runpodemu"
)

// startEmulator runs a Runpod emulator for one test.
func startEmulator(t *testing.T) *runpodemu.Emulator {
	t.Helper()
	emu, err := runpodemu.Start(runpodemu.Config{Dir: t.TempDir()}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	return emu
}

const testImage = "registry.invalid/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"

func TestConformance(t *testing.T) {
	emus := map[*testing.T]*runpodemu.Emulator{} // one account per test, shared by its apps
	providertest.Run(t, providertest.Harness{
		Open: func(t *testing.T, app string) provider.Provider {
			emu, ok := emus[t]
			if !ok {
				emu = startEmulator(t)
				emus[t] = emu
			}
			p, err := New(Config{App: app, Client: &Client{Base: emu.URL(), Key: emu.APIKey()}, Image: testImage})
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		InPlace: true,
	})
}
