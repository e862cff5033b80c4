// Package browsertest holds end-to-end tests that drive a real browser
// (headless Chromium, through chromedp) against a real taskd process. It
// has no code of its own: its tests are in riverui_test.go, and their
// screenshots go to testdata/out (gitignored).
package browsertest
