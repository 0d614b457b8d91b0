from event_collector.cli import app

app()
