"""Realistic chapter 06 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake

MISTAKES = [
    Mistake("sigmoid forgotten in forward", task="ch06.model",
            edits=[("return torch.sigmoid(self.linear(x))", "return self.linear(x)")],
            message="sigmoid is missing"),
    Mistake("BCE sign flipped", task="ch06.bce",
            edits=[("return -(y * torch.log(p)", "return (y * torch.log(p)")],
            message="sign is flipped"),
    Mistake("BCE without clamping", task="ch06.bce",
            edits=[("p = y_pred.clamp(EPS, 1 - EPS)", "p = y_pred")],
            message="no clamping"),
    Mistake("BCE clamped with an eps that float32 cannot hold", task="ch06.bce",
            edits=[("p = y_pred.clamp(EPS, 1 - EPS)", "p = y_pred.clamp(1e-12, 1 - 1e-12)")],
            message="rounds to exactly 1.0 in float32"),
    Mistake("log clamped at -100 instead of the probability", task="ch06.bce",
            edits=[("p = y_pred.clamp(EPS, 1 - EPS)\n"
                    "    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()",
                    "return -(y * torch.log(y_pred).clamp(min=-100)"
                    " + (1 - y) * torch.log(1 - y_pred).clamp(min=-100)).mean()")],
            message="clamp y_pred itself before the log"),
    Mistake("BCE summed instead of averaged", task="ch06.bce",
            edits=[("torch.log(1 - p)).mean()", "torch.log(1 - p)).sum()")],
            message="use .mean()"),
    Mistake("BCE terms swapped", task="ch06.bce",
            edits=[("-(y * torch.log(p) + (1 - y) * torch.log(1 - p))",
                    "-(y * torch.log(1 - p) + (1 - y) * torch.log(p))")],
            message="terms are swapped"),
    Mistake("no zero_grad in the training loop", task="ch06.train",
            edits=[("        optimizer.zero_grad()\n", "")],
            message="call optimizer.zero_grad() every epoch"),
    Mistake("mean BCELoss instead of the lecture's sum", task="ch06.train",
            edits=[('criterion = nn.BCELoss(reduction="sum")', "criterion = nn.BCELoss()")],
            message="reduction='sum'"),
]
