"""Pure: names, times, the plan model, schedule math, frontmatter. No I/O, no clock."""
