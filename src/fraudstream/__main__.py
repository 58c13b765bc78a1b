from fraudstream.cli.main import entry

entry()
