"""The write path: what an exchange becomes before it is stored."""
