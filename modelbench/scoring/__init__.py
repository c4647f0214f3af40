"""The benchmark's scoring rules: how verdicts become item scores, rates, intervals and grades.

Evaluators (`modelbench.graders`) judge one answer each; everything after that is here: the
entropy-weighted ensemble (`ensemble`), grades against a reference standard with intervals and
minimum sizes (`grades`), grade stability (`stability`), rates corrected for the evaluators' error
(`correction`), paired comparisons of two SUTs on the same items (`paired`), and loading the
ensemble's calibrated priors (`reliability`). Nothing here touches a model or the network.
"""
