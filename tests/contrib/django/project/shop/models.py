from django.db import models


class Order(models.Model):
    email = models.CharField(max_length=200)
    confirmed = models.BooleanField(default=False)


class Run(models.Model):
    """One run of a task, written by the task itself (what the tests look at)."""

    label = models.CharField(max_length=200)
    attempt = models.IntegerField(default=0)
    result_id = models.CharField(max_length=40, default="")
    started = models.DateTimeField()
    finished = models.DateTimeField(null=True)
