"""Realistic chapter 11 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake, Variant

MISTAKES = [
    Mistake("branches concatenated on the batch dimension", task="ch11.inception",
            edits=[("return torch.cat(outputs, dim=1)", "return torch.cat(outputs)")],
            message="is every branch concatenated along dim=1?"),
    Mistake("a branch left out of the concatenation", task="ch11.inception",
            edits=[("outputs = [branch1x1, branch5x5, branch3x3, branch_pool]",
                    "outputs = [branch1x1, branch5x5, branch_pool]")],
            message="returned 64 channels, expected 88 = 16 + 24 + 24 + 24"),
    Mistake("5x5 convolution without padding", task="ch11.inception",
            edits=[("self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5, padding=2)",
                    "self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5)")],
            message="use padding=2"),
    Mistake("pool branch with the default stride", task="ch11.inception",
            edits=[("F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)",
                    "F.avg_pool2d(x, kernel_size=3, padding=1)")],
            message="stride defaults to kernel_size"),
    Mistake("pool branch with max pooling", task="ch11.inception",
            edits=[("F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)",
                    "F.max_pool2d(x, kernel_size=3, stride=1, padding=1)")],
            message="uses max pooling"),
    Mistake("residual block without the skip connection", task="ch11.residual",
            edits=[("return F.relu(x + y)", "return F.relu(y)")],
            message="skip connection is missing"),
    Mistake("residual input added after the ReLU", task="ch11.residual",
            edits=[("return F.relu(x + y)", "return x + F.relu(y)")],
            message="added after the last ReLU"),
    Mistake("GoogLeNet without ReLUs", task="ch11.googlenet",
            edits=[("x = F.relu(self.mp(self.conv1(x)))\n        x = self.incep1(x)\n"
                    "        x = F.relu(self.mp(self.conv2(x)))",
                    "x = self.mp(self.conv1(x))\n        x = self.incep1(x)\n        x = self.mp(self.conv2(x))")],
            message="ReLUs are missing"),
    Mistake("GoogLeNet skips its second Inception block", task="ch11.googlenet",
            edits=[("        x = self.incep2(x)\n", "")],
            message="1408 features"),
    Mistake("ResNet skips its second residual block", task="ch11.resnet",
            edits=[("        x = self.rblock2(x)\n", "")],
            message="expected rblock1 then rblock2"),
    Mistake("branches concatenated in another order", task="ch11.inception",
            edits=[("outputs = [branch1x1, branch5x5, branch3x3, branch_pool]",
                    "outputs = [branch1x1, branch3x3, branch5x5, branch_pool]")],
            message="another order than the lecture's"),
    Mistake("pool branch skips the pooling", task="ch11.inception",
            edits=[("branch_pool = self.branch_pool(branch_pool)", "branch_pool = self.branch_pool(x)")],
            message="skips the pooling"),
    Mistake("residual block without the inner ReLU", task="ch11.residual",
            edits=[("y = F.relu(self.conv1(x))", "y = self.conv1(x)")],
            message="the ReLU between conv1 and conv2 is missing"),
    Mistake("ResNet without ReLUs", task="ch11.resnet",
            edits=[("x = self.mp(F.relu(self.conv1(x)))", "x = self.mp(self.conv1(x))"),
                   ("x = self.mp(F.relu(self.conv2(x)))", "x = self.mp(self.conv2(x))")],
            message="ReLUs are missing"),
    # passes every public test (batches of 3); the hidden tests run GoogLeNet on batches of 5 and 1
    Mistake("hard-codes the public answers", task="ch11.googlenet", public=False,
            edits=[("        x = self.incep2(x)\n        x = x.view(batch_size, -1)\n",
                    "        x = self.incep2(x)\n        x = x.view(3, 1408)\n")],
            message="never a fixed number"),
]

VARIANTS = [
    Variant("InceptionA layers created in another order", edits=[
        ("        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)\n\n"
         "        self.branch5x5_1 = nn.Conv2d(in_channels, 16, kernel_size=1)\n"
         "        self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5, padding=2)\n\n"
         "        self.branch3x3_1 = nn.Conv2d(in_channels, 16, kernel_size=1)\n"
         "        self.branch3x3_2 = nn.Conv2d(16, 24, kernel_size=3, padding=1)\n"
         "        self.branch3x3_3 = nn.Conv2d(24, 24, kernel_size=3, padding=1)\n\n"
         "        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)\n",
         "        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)\n"
         "        self.branch3x3_3 = nn.Conv2d(24, 24, kernel_size=3, padding=1)\n"
         "        self.branch3x3_2 = nn.Conv2d(16, 24, (3, 3), padding=(1, 1))\n"
         "        self.branch3x3_1 = nn.Conv2d(in_channels, 16, 1)\n"
         "        self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5, padding=\"same\")\n"
         "        self.branch5x5_1 = nn.Conv2d(in_channels, 16, kernel_size=1)\n"
         "        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)\n")]),
    Variant("pool branch as an nn.AvgPool2d module, one torch.cat", edits=[
        ("        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)\n",
         "        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)\n"
         "        self.pool = nn.AvgPool2d(kernel_size=3, stride=1, padding=1)\n"),
        ("        outputs = [branch1x1, branch5x5, branch3x3, branch_pool]\n"
         "        return torch.cat(outputs, dim=1)\n",
         "        return torch.cat((branch1x1, branch5x5, branch3x3, self.branch_pool(self.pool(x))), 1)\n")]),
    Variant("ResidualBlock with an in-place skip and torch.relu", edits=[
        ("        y = F.relu(self.conv1(x))\n        y = self.conv2(y)\n        return F.relu(x + y)\n",
         "        out = self.conv2(torch.relu(self.conv1(x)))\n        out += x\n        return torch.relu(out)\n")]),
    Variant("networks with functional pooling and torch.flatten", edits=[
        ("        x = F.relu(self.mp(self.conv1(x)))\n        x = self.incep1(x)\n"
         "        x = F.relu(self.mp(self.conv2(x)))\n        x = self.incep2(x)\n"
         "        x = x.view(batch_size, -1)\n",
         "        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)\n        x = self.incep1(x)\n"
         "        x = F.max_pool2d(torch.relu(self.conv2(x)), kernel_size=2)\n        x = self.incep2(x)\n"
         "        x = torch.flatten(x, start_dim=1)\n"),
        ("        x = self.mp(F.relu(self.conv1(x)))\n        x = self.rblock1(x)\n"
         "        x = self.mp(F.relu(self.conv2(x)))\n        x = self.rblock2(x)\n"
         "        x = x.view(batch_size, -1)\n",
         "        x = self.rblock1(F.relu(F.max_pool2d(self.conv1(x), 2)))\n"
         "        x = self.rblock2(F.relu(F.max_pool2d(self.conv2(x), 2)))\n"
         "        x = x.flatten(1)\n")]),
]
