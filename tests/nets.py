"""Small custom networks for tests of the `--module package.module:Class` loading path."""

import torch


class DataDependent(torch.nn.Module):
    """Python control flow on a tensor's value: torch.export cannot trace it, so no backend can lower it."""

    def forward(self, x):
        if float(x.sum()) > 0:
            return x * 2
        return x - 1
