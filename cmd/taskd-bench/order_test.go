package main

import (
	"slices"
	"testing"
)

// TestRoundOrder: each round starts with the next variant; two alternate.
func TestRoundOrder(t *testing.T) {
	for _, tc := range []struct {
		i, n int
		want []int
	}{
		{1, 2, []int{0, 1}}, {2, 2, []int{1, 0}}, {3, 2, []int{0, 1}},
		{1, 4, []int{0, 1, 2, 3}}, {2, 4, []int{1, 2, 3, 0}}, {4, 4, []int{3, 0, 1, 2}}, {5, 4, []int{0, 1, 2, 3}},
	} {
		if got := roundOrder(tc.i, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("roundOrder(%d, %d) = %v, want %v", tc.i, tc.n, got, tc.want)
		}
	}
}
