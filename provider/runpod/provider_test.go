package runpod

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/flash-go/flash/provider"
)

// deployed is the answer Runpod gives for the endpoint p asks for.
func deployed(t *testing.T, p *Provider, s provider.Spec, image string) string {
	t.Helper()
	tags := map[string]string{EnvApp: "shop", EnvResource: s.Resource, "FLASH_HOST": "0.0.0.0"}
	req, err := request(EndpointName("shop", s.Resource), image, s.Config, tags)
	if err != nil {
		t.Fatal(err)
	}
	ep := asEndpoint(req)
	ep.ID = "ep1"
	b, _ := json.Marshal(map[string]any{"endpoints": []Endpoint{ep}})
	return string(b)
}

func TestProviderUpdatesOnlyWhatDiffers(t *testing.T) {
	spec := provider.Spec{Resource: "gpu", ConfigHash: "h", Config: json.RawMessage(`{"gpuIds":"ADA_24"}`)}
	newProvider := func(c *Client) *Provider {
		p, err := New(Config{App: "shop", Client: c, Image: testImage})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	c, rp := newReplay(t)
	p := newProvider(c)
	rp.answers = []answer{{status: 200, body: deployed(t, p, spec, testImage)}}
	e, err := p.Deploy(t.Context(), spec)
	if err != nil || e.ID != "ep1" || e.URLs[0] != DefaultEndpointBase+"/ep1" || e.ConfigHash != "h" {
		t.Fatalf("Deploy = %+v, %v", e, err)
	}
	if len(rp.got) != 1 {
		t.Errorf("an endpoint as asked got calls beyond the list: %v", rp.got)
	}

	c, rp = newReplay(t)
	p = newProvider(c)
	rp.answers = []answer{{status: 200, body: deployed(t, p, spec, "r/old@sha256:01")}, {status: 200, body: epJSON}}
	if _, err := p.Deploy(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if len(rp.got) != 2 || rp.got[1] != `PATCH /v2/serverless/ep1 {"image":"`+testImage+`"}` {
		t.Errorf("calls %v, want the list and a PATCH of the image alone", rp.got)
	}
}

func TestProviderNeverDeletesAForeignEndpoint(t *testing.T) {
	c, rp := newReplay(t, answer{status: 200, body: `{"id":"x","name":"flash-shop-gpu","env":{}}`})
	p, _ := New(Config{App: "shop", Client: c, Image: testImage})
	err := p.Undeploy(t.Context(), provider.Endpoint{ID: "x", Resource: "gpu"})
	if !errors.Is(err, provider.ErrNotOwned) || len(rp.got) != 1 || !strings.HasPrefix(rp.got[0], "GET ") {
		t.Errorf("Undeploy = %v after %v; want ErrNotOwned and no DELETE", err, rp.got)
	}
}
