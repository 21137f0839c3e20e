"""The pure calendar: official workdays, date rules, cadence, the holiday notice reader."""
