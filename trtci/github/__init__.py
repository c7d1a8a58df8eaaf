"""Everything that talks to GitHub: the REST client, the sticky comment, the event context, runner protocols."""
