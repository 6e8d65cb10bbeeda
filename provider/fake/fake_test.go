package fake_test

import (
	"testing"

	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/provider/fake"
	"github.com/flash-go/flash/provider/providertest"
)

func TestFakeConformance(t *testing.T) {
	providertest.Run(t, providertest.Harness{
		Open: func(t *testing.T, app string) provider.Provider { return fake.New(app) },
	})
}
