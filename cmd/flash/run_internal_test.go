package main

import (
	"slices"
	"testing"
)

func TestWrapList(t *testing.T) {
	for _, tc := range []struct {
		items []string
		width int
		want  []string
	}{
		{nil, 10, []string{""}},
		{[]string{"embed"}, 10, []string{"embed"}},
		{[]string{"a", "b", "c"}, 10, []string{"a, b, c"}},
		{[]string{"aaaa", "bbbb", "cccc"}, 10, []string{"aaaa, bbbb,", "cccc"}},
		{[]string{"a-very-long-route", "b"}, 10, []string{"a-very-long-route,", "b"}},
		{[]string{"a", "a-very-long-route"}, 10, []string{"a,", "a-very-long-route"}},
	} {
		if got := wrapList(tc.items, tc.width); !slices.Equal(got, tc.want) {
			t.Errorf("wrapList(%q, %d) = %q, want %q", tc.items, tc.width, got, tc.want)
		}
	}
}
