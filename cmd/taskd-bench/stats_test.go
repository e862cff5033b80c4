package main

import (
	"math"
	"testing"
)

func TestPairRatios(t *testing.T) {
	p := pairRatios([]float64{110, 90, 100, 120}, []float64{100, 100, 100, 100})
	if got, want := len(p.Ratios), 4; got != want {
		t.Fatalf("ratios = %v, want %d", p.Ratios, want)
	}
	if p.AtLeast1 != 3 {
		t.Errorf("at least 1.0: %d, want 3 (1.10, 1.00, 1.20)", p.AtLeast1)
	}
	// The tie (1.00) is left out of the test: P(X >= 2) for 3 tosses,
	// (3 + 1) / 8.
	if math.Abs(p.SignP-0.5) > 1e-12 {
		t.Errorf("sign test p = %v, want 0.5", p.SignP)
	}
	if q := pairRatios([]float64{110, 120, 130}, []float64{100, 100, 100}); math.Abs(q.SignP-1.0/8) > 1e-12 {
		t.Errorf("3 of 3 ahead: sign test p = %v, want 1/8", q.SignP)
	}
	if got := signTest(0, 7); got != 1 {
		t.Errorf("signTest(0, 7) = %v, want 1", got)
	}
	if got, want := signTest(7, 7), 1.0/128; math.Abs(got-want) > 1e-15 {
		t.Errorf("signTest(7, 7) = %v, want %v", got, want)
	}
	if got, want := signTest(18, 35), 0.5; math.Abs(got-want) > 1e-12 {
		t.Errorf("signTest(18, 35) = %v, want %v (35 is odd: X >= 18 is half)", got, want)
	}
}

// A small p keeps two significant digits: 8 of 8 pairs is not "0.00".
func TestFormatP(t *testing.T) {
	for p, want := range map[float64]string{signTest(8, 8): "0.0039", 0.25: "0.25", signTest(7, 8): "0.04", 0.0099: "0.0099", 1: "1.00"} {
		if got := formatP(p); got != want {
			t.Errorf("formatP(%v) = %s, want %s", p, got, want)
		}
	}
}
