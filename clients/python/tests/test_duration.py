"""Durations: what the client sends for numbers, and how it reads strings."""

import datetime
import unittest

import _support  # noqa: F401  (puts the package on sys.path)

from taskd._duration import format_duration, parse_duration


class FormatDurationTest(unittest.TestCase):
    def test_numbers_are_seconds(self) -> None:
        for value, want in [
            (0, "0s"),
            (30, "30s"),
            (1.5, "1.5s"),
            (0.1, "0.1s"),
            (0.05, "0.05s"),
            (0.0001, "0.0001s"),
            (1e-9, "0.000000001s"),
            (3600.25, "3600.25s"),
            (2.0, "2s"),
            (-1.5, "-1.5s"),
            (datetime.timedelta(minutes=1, milliseconds=500), "60.5s"),
        ]:
            with self.subTest(value=value):
                self.assertEqual(format_duration(value), want)

    def test_strings_pass_through(self) -> None:
        self.assertEqual(format_duration("1h30m"), "1h30m")

    def test_refused(self) -> None:
        with self.assertRaises(TypeError):
            format_duration(True)
        with self.assertRaises(TypeError):
            format_duration(None)  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            format_duration(float("nan"))
        with self.assertRaises(ValueError):
            format_duration(float("inf"))


class ParseDurationTest(unittest.TestCase):
    def test_go_syntax(self) -> None:
        for text, want in [
            ("0", 0.0),
            ("30s", 30.0),
            ("1.5s", 1.5),
            ("250ms", 0.25),
            ("1h30m", 5400.0),
            ("2m3.5s", 123.5),
            ("100us", 1e-4),
            ("100\u00b5s", 1e-4),
            ("5ns", 5e-9),
            ("-1.5s", -1.5),
            ("+2s", 2.0),
            (".5s", 0.5),
        ]:
            with self.subTest(text=text):
                self.assertAlmostEqual(parse_duration(text), want)

    def test_numbers(self) -> None:
        self.assertEqual(parse_duration(2), 2.0)
        self.assertEqual(parse_duration(0.5), 0.5)
        self.assertEqual(parse_duration(datetime.timedelta(seconds=3)), 3.0)

    def test_invalid(self) -> None:
        for text in ["", "s", "30", "1x", "1.5", "1 s", "-", "30s ", "1e3s"]:
            with self.subTest(text=text), self.assertRaises(ValueError):
                parse_duration(text)

    def test_round_trip(self) -> None:
        for seconds in [0, 0.05, 1.5, 30, 59.999, 3600]:
            with self.subTest(seconds=seconds):
                self.assertAlmostEqual(parse_duration(format_duration(seconds)), seconds)


if __name__ == "__main__":
    unittest.main()
