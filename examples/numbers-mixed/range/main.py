# Range: N -> [1, 2, ..., N]. HKube's one-parameter form: start(args).
def start(args):
    n = args["input"][0]
    return list(range(1, n + 1))
