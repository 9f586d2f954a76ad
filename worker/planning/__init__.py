"""From a canonical event to planned letters: rules, conditions and timing."""
