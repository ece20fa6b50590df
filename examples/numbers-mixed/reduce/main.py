# Reduce: receives every Multiply result, in batch order, and sums them.
def start(args, api):
    values = args["input"][0]
    api.progress(50, "summing %d values" % len(values))
    return sum(values)
