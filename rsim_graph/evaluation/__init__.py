"""Evaluation: the methods a table compares (`methods`) and the resumable run that answers and grades a
problem set with one of them (`runner`)."""
